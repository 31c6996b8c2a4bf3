"""Which ATen operators the CPU RL step spends its time in (issue 21 item 5): torch.profiler over real training
steps, the parts of rl_step_profile.py marked as regions (R_generation, R_shaping, R_loss_forward, R_backward).

The first step warms up and is not profiled. Prints two tables: operators by self CPU time, and by total time
(regions included). Run it on an otherwise idle machine, at the training's thread count (the workflow trains at 1):

    OMP_NUM_THREADS=1 python benchmarks/rl_step_ops.py --model <testbed warm start> \
        --data <testbed data>/train.jsonl --method pgpo --steps 4 > benchmarks/results/rl_step_ops_pgpo.txt
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile, record_function

REGIONS = (("_generate", "R_generation"), ("_shape_advantages", "R_shaping"), ("_compute_loss", "R_loss_forward"))


def main() -> None:
    from transformers import TrainerCallback

    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import build_trainer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the testbed warm start (or any tiny checkpoint)")
    p.add_argument("--data", required=True, help="train.jsonl of the testbed data")
    p.add_argument("--config", default="workflows/config/train/tiny.yaml")
    p.add_argument("--method", default="pgpo")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps (the first is not profiled)")
    p.add_argument("--max-completion-length", type=int, default=64, help="the testbed's L + 16")
    p.add_argument("--rows", type=int, default=45, help="operators per table")
    a = p.parse_args()
    overrides = {"model": {"path": a.model}, "data": {"train": a.data}, "max_steps": a.steps, "save_steps": 10 ** 6,
                 "rollout": {"max_completion_length": a.max_completion_length},
                 "threads": torch.get_num_threads()}
    trainer = build_trainer(load_train_config(a.config, overrides), load_method(a.method),
                            tempfile.mkdtemp(prefix="rl-step-ops-"))
    owners = [(trainer, name, label) for name, label in REGIONS] + [(trainer.accelerator, "backward", "R_backward")]
    for owner, name, label in owners:
        inner = getattr(owner, name)

        def marked(*args, _inner=inner, _label=label, **kwargs):
            with record_function(_label):
                return _inner(*args, **kwargs)

        setattr(owner, name, marked)
    prof = profile(activities=[ProfilerActivity.CPU])

    class StartAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                prof.start()

    trainer.add_callback(StartAfterFirstStep())
    trainer.train()
    prof.stop()
    print(f"# {a.method}, steps 2-{a.steps}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=a.rows))
    print(averages.table(sort_by="cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
