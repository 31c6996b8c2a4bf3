"""RL training: the only package that imports trl. The TRL bridge (every private TRL touch point, with contract
tests), TRL's chunked LM head (trl_head), the GRPO trainer subclass (trainer), dynamic sampling, GRPOConfig
arguments, the engine-vs-trainer log-prob gap, and one training run with its output directory (run)."""
