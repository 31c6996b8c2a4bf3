"""Supervised warm start: teach the tiny base model the answer format and part of each skill, so RL starts from
non-trivial accuracy (tiny-learnability: RL gets no signal from tasks at chance or at ceiling)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pgpo.data.datasets import Record, load_split
from pgpo.util.progress import iterate
from pgpo.tiny.sampling import accuracy, load_images, prompt_texts, sample, target_text
from pgpo.util.atomic import write_atomic


@dataclass
class WarmStartConfig:
    """Supervised warm start of the tiny model."""

    steps: int = 1200
    """Optimizer steps."""
    batch_size: int = 32
    """Problems per step."""
    lr: float = 2e-3
    """AdamW learning rate (constant after warm-up)."""
    warmup_steps: int = 30
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    label_noise: float = 0.0
    """Share of targets whose answer is replaced by a random answer of the same task."""
    eval_every: int = 200
    """Steps between held-out greedy checks (0 = only at the end)."""
    eval_items: int = 16
    """Held-out items per task for those checks."""
    seed: int = 0
    """Data order and initialisation of the optimizer state."""


def noisy_answers(records: list[Record], share: float, rng: random.Random) -> list[Record]:
    """Replace the answer of a `share` of records by one drawn uniformly from the answers of the same task.

    Why: a clean-label warm start leaves each skill either solved or at chance, with no room for RL to improve in
    minutes. With label noise eps the supervised optimum puts about (1 - eps) + eps / K on the right answer where the
    skill is learned: an informed but under-confident policy, which RL can sharpen (the regime of avg@8 at T = 1).
    """
    if share <= 0:
        return records
    answers: dict[str, list[str]] = {}
    for r in records:
        answers.setdefault(r.task, [])
        if r.answer not in answers[r.task]:
            answers[r.task].append(r.answer)
    return [dataclasses.replace(r, answer=rng.choice(answers[r.task])) if rng.random() < share else r
            for r in records]


def _batch(processor, records: list[Record]):
    """Right-padded prompt + target with labels on the target only; mm_token_type_ids extended over the target."""
    tok = processor.tokenizer
    enc = processor(images=load_images(records), text=prompt_texts(processor, records), padding=False)
    rows = []
    for i, r in enumerate(records):
        prompt = list(enc["input_ids"][i])
        target = tok(target_text(r) + tok.eos_token, add_special_tokens=False)["input_ids"]
        mm = list(enc["mm_token_type_ids"][i]) + [0] * len(target)
        rows.append((prompt + target, [-100] * len(prompt) + target, mm))
    width = max(len(ids) for ids, _, _ in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    mm = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (a, b, c) in enumerate(rows):
        ids[i, :len(a)], labels[i, :len(b)], mask[i, :len(a)], mm[i, :len(c)] = (
            torch.tensor(a), torch.tensor(b), 1, torch.tensor(c))
    return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": mm, "labels": labels,
            "pixel_values": torch.as_tensor(enc["pixel_values"]),
            "image_grid_thw": torch.as_tensor(enc["image_grid_thw"])}


def warm_start(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path, cfg: WarmStartConfig) -> dict:
    """Fine-tune model_dir on data_dir/warmstart.jsonl, save to out_dir, return the held-out accuracy curve."""
    from pgpo.models.loading import load_model
    from pgpo.models.processor import load_processor

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    processor = load_processor(model_dir)
    model = load_model(model_dir)
    train = noisy_answers(load_split(Path(data_dir) / "warmstart.jsonl"), cfg.label_noise, random.Random(cfg.seed + 1))
    held = _held_out(data_dir, cfg.eval_items)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    order: list[int] = []
    curve, start = [], time.perf_counter()
    for step in iterate(range(1, cfg.steps + 1), desc="warm-start", unit="step"):  # plain lines in a log file
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(train)), len(train))
        batch = _batch(processor, [train[order.pop()] for _ in range(cfg.batch_size)])
        model.train()
        loss = model(**batch).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"warm start diverged at step {step} (loss {loss.item()}); lower lr={cfg.lr}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            acc = accuracy(held, sample(model, processor, held, k=1, temperature=0.0))
            curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1), "loss": loss.item(),
                          "greedy_accuracy": acc})
            tqdm.write(json.dumps(curve[-1]))
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    report = {"config": asdict(cfg), "base": str(model_dir), "curve": curve}
    write_atomic(out / "warmstart.json", json.dumps(report, indent=2))
    return report


def _held_out(data_dir, per_task: int) -> list[Record]:
    from pgpo.tiny.synthetic import TASKS

    return [r for t in TASKS for r in load_split(Path(data_dir) / f"suite_{t}.jsonl")[:per_task]]
