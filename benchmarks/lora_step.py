"""LoRA against full fine-tuning on the same tiny batch, side by side in one process (issue 24, item 1): the update's
time (loss forward with the method's shaping, backward, optimizer step) and the training state's memory
(trainable parameters, their gradients, AdamW's two moments), each as LoRA / full.

One rollout is generated once (by the full model) and reused by both trainers, with sequence advantages set by hand
(the untrained tiny model earns no reward), so both time exactly the same tokens; repetitions are interleaved
(full, lora, full, ...) so drift hits both equally. Activations are the same model's in both and are not counted:
the memory ratio is that of the states that scale with the trainable parameters, which is what LoRA changes.

    python benchmarks/lora_step.py --model results/tiny/model/warmstart --data results/tiny/data/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def state_bytes(trainer) -> dict[str, int]:
    """Bytes of the trainable parameters, their gradients and the optimizer's state (after one step)."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    optim = sum(t.numel() * t.element_size() for s in trainer.optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    n = sum(p.numel() * p.element_size() for p in params)
    return {"trainable_parameters": n, "gradients": n, "optimizer_state": optim, "total": 2 * n + optim}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="results/tiny/model/warmstart")
    p.add_argument("--data", default="results/tiny/data/train.jsonl")
    p.add_argument("--config", default="workflows/config/train/tiny.yaml")
    p.add_argument("--method", default="pgpo")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()

    from trl import GRPOTrainer

    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import build_trainer

    base = {"model": {"path": a.model}, "data": {"train": a.data}}
    trainers = {}
    for name, lora in (("full", 0), ("lora", a.rank)):
        cfg = load_train_config(a.config, {**base, "model": {"path": a.model, "lora": {"rank": lora}}})
        t = build_trainer(cfg, load_method(a.method), tempfile.mkdtemp())
        t.current_gradient_accumulation_steps = t.args.gradient_accumulation_steps  # normally set by train()
        t.create_optimizer_and_scheduler(num_training_steps=10 ** 6)
        trainers[name] = t
    full = trainers["full"]
    g = full.num_generations
    rows = [full.train_dataset[i] for i in range(cfg.rollout.prompts_per_step) for _ in range(g)]
    full.model.train()
    rollout = GRPOTrainer._generate_and_score_completions(full, rows)
    n = rollout["completion_ids"].size(0)
    rollout["advantages"] = torch.linspace(-1.0, 1.0, n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]

    def step(t) -> float:
        t.model.train()
        start = time.perf_counter()
        t.model.zero_grad(set_to_none=True)
        t._compute_loss(t.model, dict(rollout)).backward()
        t.optimizer.step()
        return time.perf_counter() - start

    for t in trainers.values():
        step(t)  # warm-up, and the optimizer's state exists after it
    times = {name: [] for name in trainers}
    for _ in range(a.repeats):
        for name, t in trainers.items():
            times[name].append(step(t))
    result = {"method": a.method, "rank": a.rank, "repeats": a.repeats, "threads": torch.get_num_threads(),
              "step_seconds": {k: statistics.median(v) for k, v in times.items()},
              "state_bytes": {k: state_bytes(t) for k, t in trainers.items()}}
    result["step_time_ratio_lora_over_full"] = result["step_seconds"]["lora"] / result["step_seconds"]["full"]
    result["state_memory_ratio_lora_over_full"] = (result["state_bytes"]["lora"]["total"]
                                                    / result["state_bytes"]["full"]["total"])
    print(f"{a.method}, LoRA rank {a.rank} vs full fine-tuning, {a.repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    for k in trainers:
        s = result["state_bytes"][k]
        print(f"  {k:4s} update {result['step_seconds'][k] * 1000:8.1f} ms (median)   trainable "
              f"{s['trainable_parameters'] / 2**20:8.2f} MB  + gradients + AdamW state = {s['total'] / 2**20:8.2f} MB")
    print(f"  ratio LoRA / full: update time {result['step_time_ratio_lora_over_full']:.3f}, "
          f"training-state memory {result['state_memory_ratio_lora_over_full']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
