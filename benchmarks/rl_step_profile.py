"""Where the time of one CPU RL step goes, per method, on the credit testbed's batch (issue 21 item 5).

Real training steps (`trainer.train()`, max_steps = --steps) of each method from the same warm start, seed and data,
with timers around the parts of a step. Every part is a span of wall time inside the step:
  generation   TRL's sampler (GRPOTrainer._generate: model.generate + decoding), every dynamic-sampling round
  rewards      the reward functions (_calculate_rewards)
  rollout_rest the rest of TRL's rollout (prompt processing, image preprocessing, padding, advantages)
  shaping      the method's generation-time work (_shape_advantages: PGPO's blind pass, PAPO/VPPO's extra views)
  loss_forward TRL's loss (_compute_loss: the forward with the image, the method's loss terms, deferred shaping)
  backward     accelerator.backward
  optimizer    optimizer.step (between the on_pre_optimizer_step and on_optimizer_step callbacks)
  other        the step's wall time minus all of the above (logging, callbacks, TRL bookkeeping)
The first step of each method warms up and is dropped; medians over the others. Methods run one after another in
one process on the same threads (run it on an otherwise idle machine: no other job, no helper sessions).

--compare-speedups runs every method twice, side by side in this process: first without the generation speed-ups
(pgpo.models.attention.resolve patched to the identity: transformers' sdpa with repeat_kv copies everywhere;
pgpo.models.shared_prefill.install a no-op: every copy of a prompt prefilled), then as training runs it; it prints the
per-part ratio before / after and whether the two runs end in the same weights bit for bit (sha256 of every
parameter).

    python benchmarks/rl_step_profile.py --model <testbed warm start> --data <testbed data>/train.jsonl \
        --set rollout.max_completion_length=64 --steps 4 --json benchmarks/results/rl_step_profile.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import tempfile
import time
from collections import defaultdict

import torch

PARTS = ("generation", "rewards", "rollout_rest", "shaping", "loss_forward", "backward", "optimizer", "other")


class Timers:
    """Wall-time spans by part, per optimizer step (spans nested in another part are subtracted from it)."""

    def __init__(self):
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []

    @contextlib.contextmanager
    def span(self, part: str):
        start = time.perf_counter()
        self.stack.append(part)
        try:
            yield
        finally:
            self.stack.pop()
            took = time.perf_counter() - start
            self.current[part] += took
            if self.stack:  # the enclosing part keeps only its own time
                self.current[self.stack[-1]] -= took

    def wrap(self, owner, name: str, part: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.span(part):
                return inner(*args, **kwargs)

        setattr(owner, name, timed)


def profile_method(method: str, a, overrides: dict) -> dict:
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import build_trainer

    cfg = load_train_config(a.config, overrides)
    trainer = build_trainer(cfg, load_method(method), tempfile.mkdtemp(prefix=f"profile-{method}-"))
    timers = Timers()
    rollout = GRPOTrainer._generate_and_score_completions  # TRL's, which our generation_step calls per round
    timers.wrap(trainer, "_generate", "generation")
    timers.wrap(trainer, "_calculate_rewards", "rewards")
    timers.wrap(trainer, "_shape_advantages", "shaping")
    timers.wrap(trainer, "_compute_loss", "loss_forward")
    timers.wrap(trainer.accelerator, "backward", "backward")

    def rollout_timed(self, inputs):
        with timers.span("rollout_rest"):
            return rollout(self, inputs)

    GRPOTrainer._generate_and_score_completions = rollout_timed

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timers.current = defaultdict(float)
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            self.opt = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            timers.current["optimizer"] += time.perf_counter() - self.opt

        def on_step_end(self, args, state, control, **kw):
            total = time.perf_counter() - self.start
            step = dict(timers.current)
            step["other"] = total - sum(step.values())
            step["total"] = total
            timers.steps.append(step)

    trainer.add_callback(StepClock())
    try:
        trainer.train()
    finally:
        GRPOTrainer._generate_and_score_completions = rollout
    digest = hashlib.sha256()
    for name, param in sorted(trainer.model.named_parameters()):
        digest.update(name.encode() + param.detach().cpu().contiguous().numpy().tobytes())
    kept = timers.steps[1:] or timers.steps
    med = {p: statistics.median(s.get(p, 0.0) for s in kept) for p in (*PARTS, "total")}
    tokens = [r.get("num_tokens") for r in trainer.state.log_history if "num_tokens" in r]
    return {"median_seconds": {p: round(v, 3) for p, v in med.items()},
            "steps": [{p: round(v, 3) for p, v in s.items()} for s in timers.steps],
            "rounds": [r.get("dynamic_sampling/rounds") for r in trainer.state.log_history
                       if "dynamic_sampling/rounds" in r],
            "num_tokens_cumulative": tokens, "weights_sha256": digest.hexdigest()}


def profile_without_speedups(method: str, a, overrides: dict) -> dict:
    """profile_method without pgpo.models.attention's sdpa_gqa and pgpo.models.shared_prefill: the before."""
    from pgpo.models import attention, shared_prefill

    resolve, install = attention.resolve, shared_prefill.install
    attention.resolve = lambda name: name
    shared_prefill.install = lambda model: None
    try:
        return profile_method(method, a, overrides)
    finally:
        attention.resolve, shared_prefill.install = resolve, install


def main() -> None:
    import yaml

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the testbed warm start (or any tiny checkpoint)")
    p.add_argument("--data", required=True, help="train.jsonl of the testbed data")
    p.add_argument("--config", default="workflows/config/train/tiny.yaml")
    p.add_argument("--methods", default="dapo,pgpo", help="comma-separated")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per method (the first is dropped)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override, dotted")
    p.add_argument("--compare-speedups", action="store_true", help="each method without, then with the generation "
                   "speed-ups (sdpa_gqa, shared prefill): ratios and a bitwise check of the final weights")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()
    overrides: dict = {"model": {"path": a.model}, "data": {"train": a.data}, "max_steps": a.steps,
                       "save_steps": 10 ** 6}
    for item in a.set:
        key, value = item.split("=", 1)
        node = overrides
        *path, leaf = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "overrides": overrides, "methods": {}}
    for method in a.methods.split(","):
        if a.compare_speedups:
            result["methods"][f"{method}/before"] = profile_without_speedups(method, a, overrides)
        result["methods"][method] = profile_method(method, a, overrides)
    print(json.dumps({m: r["median_seconds"] for m, r in result["methods"].items()}, indent=2))
    names = list(result["methods"])
    width = max(10, *(len(m) + 2 for m in names))
    print(f"\n{'part':<14}" + "".join(f"{m:>{width}}" for m in names) + "   share of " + names[-1])
    last = result["methods"][names[-1]]["median_seconds"]
    for part in (*PARTS, "total"):
        row = "".join(f"{result['methods'][m]['median_seconds'][part]:>{width}.2f}" for m in names)
        print(f"{part:<14}{row}   {last[part] / last['total']:.1%}")
    if a.compare_speedups:
        result["speedups"] = {}
        print(f"\n{'part':<14}" + "".join(f"{m + ' x':>12}" for m in a.methods.split(",")) + "   (before / after)")
        for part in (*PARTS, "total"):
            cells = []
            for m in a.methods.split(","):
                before = result["methods"][f"{m}/before"]["median_seconds"][part]
                after = result["methods"][m]["median_seconds"][part]
                cells.append(before / after if after else float("nan"))
            print(f"{part:<14}" + "".join(f"{c:>12.2f}" for c in cells))
        for m in a.methods.split(","):
            same = result["methods"][f"{m}/before"]["weights_sha256"] == result["methods"][m]["weights_sha256"]
            result["speedups"][m] = {"weights_bitwise_equal": same}
            print(f"{m}: final weights bitwise equal with and without the speed-ups: {same}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
