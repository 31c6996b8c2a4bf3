"""What logging rollout samples costs a training step (issue 25, item 2), side by side in one process: the
generation step (rollout, blind pass, shaping) of the same batch with samples due at that step and not due,
interleaved, and the pieces: the rollout-side selection (decoding prompt and response), the shaping-side record
(JSON line), and the MLflow table of one step written to a sqlite store (what live logging adds at a logged step).
Every step of a run pays nothing but a [B] tensor; a logged step (every `samples.every`) pays the rest.

    python benchmarks/sample_logging.py --model results/tiny/model/warmstart --data results/tiny/data/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="results/tiny/model/warmstart")
    p.add_argument("--data", default="results/tiny/data/train.jsonl")
    p.add_argument("--config", default="workflows/config/train/tiny.yaml")
    p.add_argument("--method", default="pgpo_grpo", help="a blind-view method without dynamic sampling (one round)")
    p.add_argument("--rollouts", type=int, default=2, help="samples.rollouts")
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()

    import torch

    from pgpo.config.schema import load_method, load_train_config
    from pgpo.tracking.store import client_for, experiment, log_samples
    from pgpo.training.run import build_trainer

    out = Path(tempfile.mkdtemp())
    cfg = load_train_config(a.config, {"model": {"path": a.model}, "data": {"train": a.data},
                                       "samples": {"every": 1, "rollouts": a.rollouts}})
    trainer = build_trainer(cfg, load_method(a.method), out)
    trainer.model.train()
    g = trainer.num_generations
    rows = [trainer.train_dataset[i] for i in range(cfg.rollout.prompts_per_step) for _ in range(g)]
    times: dict[str, list[float]] = {"step_logged": [], "step_not_logged": []}
    for r in range(2 * a.repeats + 1):
        due = r % 2 == 1  # the first (warm-up) round is not counted
        trainer.samples.every = 1 if due else 10 ** 9
        torch.manual_seed(r // 2)  # the same sampling in both arms of a pair
        start = time.perf_counter()
        trainer.generation_step(rows)
        if r:
            times["step_logged" if due else "step_not_logged"].append(time.perf_counter() - start)
    # the pieces, on one real rollout batch (a per-response shaper records its samples in the loss, not above)
    trainer.samples.every = 1
    torch.manual_seed(0)
    batch = trainer.rollout(rows)
    batch["rollout_rewards"] = batch.pop("rewards")
    mask = batch["completion_mask"]
    select, observe = [], []
    for _ in range(50):
        b = dict(batch)
        t0 = time.perf_counter()
        trainer.samples.select(b, rows, 1)
        t1 = time.perf_counter()
        trainer.samples.observe(b, b["advantages"], b["advantages"][:, None] * mask, torch.rand(mask.shape))
        t2 = time.perf_counter()
        select.append(t1 - t0)
        observe.append(t2 - t1)
    logged = (out / "samples.jsonl").read_text().splitlines()  # step 1's, many times over: keep one step's worth
    (out / "samples.jsonl").write_text("\n".join(logged[:a.rollouts]) + "\n")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = client_for(uri)
    run_id = client.create_run(experiment(client, "bench", None)).info.run_id
    tables = []
    for i in range(5):
        t0 = time.perf_counter()
        log_samples(client, run_id, out, set() if i == 0 else {1})
        tables.append(time.perf_counter() - t0)
    # the first call logs step 1's table; later calls find it logged (what a step without new samples pays)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "method": a.method, "rollouts_logged": a.rollouts, "batch_rows": len(rows), "repeats": a.repeats,
        "step_seconds_median": med, "step_ratio_logged_over_not": med["step_logged"] / med["step_not_logged"],
        "select_ms_median": 1000 * statistics.median(select), "observe_ms_median": 1000 * statistics.median(observe),
        "mlflow_table_first_ms": 1000 * tables[0], "mlflow_nothing_new_ms_median": 1000 * statistics.median(tables[1:]),
    }
    print(json.dumps(result, indent=2))
    print(f"generation step, samples logged / not: {result['step_ratio_logged_over_not']:.3f}x "
          f"({med['step_logged']:.3f} s vs {med['step_not_logged']:.3f} s); select {result['select_ms_median']:.2f} ms, "
          f"record {result['observe_ms_median']:.2f} ms, MLflow table {result['mlflow_table_first_ms']:.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
