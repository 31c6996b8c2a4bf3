"""Step time of each method relative to DAPO on the same tiny batch, measured side by side in one process.

One rollout batch is generated once and reused, so every method times exactly the same tokens. A "step" here is
what differs between methods per generation step plus the shared update: shaping (PGPO: the image-conditioned and
attention-masked passes + weights; VPPO / PAPO: the image-conditioned pass, re-processing the patch-blackened
images and a full forward on them; DAPO: broadcast) and the loss forward/backward (PAPO / VPPO: with their loss
terms). Generation time (identical for all, and dynamic sampling's extra rounds, which depend on rewards not on
the method) is timed once and reported beside it. Repetitions are interleaved (dapo, pgpo, papo, vppo, dapo, ...)
so drift hits every method equally.

The cost limit of PGPO over DAPO is DAPO's step plus one no-gradient forward over the text tokens (the blind view
cannot cost less than a forward). That forward is measured in the same run, interleaved with the methods: TRL's
own log-prob pass (the trainer's _get_per_token_logps_and_entropies, micro-batch as in training) over the rollout
batch with the visual columns removed (pgpo.models.blind_sequence.blind_inputs) and no image. Printed: each method's ratio
over DAPO, limit = (dapo + text_forward) / dapo, and each method's ratio over the limit (target for PGPO: <= 1.1).

    python benchmarks/step_time.py --model results/tiny/model/warmstart --data results/tiny/data/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="results/tiny/model/warmstart")
    p.add_argument("--data", default="results/tiny/data/train.jsonl")
    p.add_argument("--config", default="workflows/config/train/tiny.yaml")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--methods", default="dapo,pgpo,papo,vppo", help="comma-separated; the first is the baseline")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()

    from trl import GRPOTrainer

    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import build_trainer

    cfg = load_train_config(a.config, {"model": {"path": a.model}, "data": {"train": a.data}})
    names = a.methods.split(",")
    trainers = {m: build_trainer(cfg, load_method(m), tempfile.mkdtemp()) for m in names}
    base = trainers[names[0]]
    for t in trainers.values():  # identical weights in every trainer
        t.model.load_state_dict(base.model.state_dict())
        t.current_gradient_accumulation_steps = t.args.gradient_accumulation_steps  # normally set by train()
    g = cfg.rollout.num_generations
    rows = [base.train_dataset[i] for i in range(cfg.rollout.prompts_per_step) for _ in range(g)]
    base.model.train()
    start = time.perf_counter()
    rollout = GRPOTrainer._generate_and_score_completions(base, rows)
    generation = time.perf_counter() - start

    text_forward = text_forward_fn(base, rollout)
    times: dict[str, list[float]] = {m: [] for m in trainers}
    times["text_forward"] = []
    for _ in range(a.repeats + 1):  # the first round warms up and is dropped
        for name, trainer in trainers.items():
            trainer.model.train()
            start = time.perf_counter()
            shaped = trainer._shape_advantages({**rollout, "rows": rows}, "train")
            loss = trainer._compute_loss(trainer.model, shaped)
            loss.backward()
            trainer.model.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        text_forward()
        times["text_forward"].append(time.perf_counter() - start)
    med = {m: statistics.median(v[1:]) for m, v in times.items()}
    baseline = names[0]
    limit = (med[baseline] + med["text_forward"]) / med[baseline]
    result = {
        "batch": {"prompts": cfg.rollout.prompts_per_step, "generations": g,
                  "completion_tokens": int(rollout["completion_mask"].sum())},
        "threads": torch.get_num_threads(), "repeats": a.repeats,
        "generation_seconds": round(generation, 3),
        "shape_and_update_seconds_median": {m: round(v, 4) for m, v in med.items()},
        f"ratio_over_{names[0]}_shape_and_update": {m: round(med[m] / med[names[0]], 3) for m in names},
        f"limit = ({baseline} + text_forward) / {baseline}": round(limit, 3),
        "ratio_over_limit_shape_and_update": {m: round(med[m] / med[baseline] / limit, 3) for m in names},
        f"ratio_over_{names[0]}_with_generation": {
            m: round((generation + med[m]) / (generation + med[names[0]]), 3) for m in names},
    }
    print(json.dumps(result, indent=2))
    print(f"\n{'method':<14}{'seconds':>9}{'/' + baseline:>9}{'/limit':>9}")
    for m in names:
        print(f"{m:<14}{med[m]:>9.4f}{med[m] / med[baseline]:>9.3f}{med[m] / med[baseline] / limit:>9.3f}")
    print(f"{'text_forward':<14}{med['text_forward']:>9.4f}   limit = ({baseline} + text_forward)/{baseline} = "
          f"{limit:.3f}")
    if "pgpo" in med:
        over = med["pgpo"] / med[baseline] / limit
        print(f"target pgpo/{baseline} <= 1.1 x limit: {over:.3f} x limit -> {'met' if over <= 1.1 else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


def text_forward_fn(trainer, rollout):
    """One no-gradient forward over the rollout's text tokens only (visual columns removed, no image), through
    the trainer's own log-prob pass at the training micro-batch."""
    from pgpo.models.blind_sequence import blind_inputs

    ids = torch.cat([rollout["prompt_ids"], rollout["completion_ids"]], dim=1)
    attention = torch.cat([rollout["prompt_mask"], rollout["completion_mask"]], dim=1)
    t = rollout["completion_ids"].size(1)
    text = blind_inputs(trainer.model, ids, attention, rollout["mm_token_type_ids"], rollout["image_grid_thw"], t)
    if (text["attention_mask"][:, :-t] != text["label_mask"][:, :-t]).any():
        raise RuntimeError("text_forward: a visual token is left in the prompt")

    @torch.no_grad()
    def forward():
        return trainer._get_per_token_logps_and_entropies(
            trainer.model, text["input_ids"], text["attention_mask"], t,
            batch_size=trainer.args.per_device_train_batch_size,
            mm_token_type_ids=torch.zeros_like(text["input_ids"]))

    return forward


if __name__ == "__main__":
    main()
