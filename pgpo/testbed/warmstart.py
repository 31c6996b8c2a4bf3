"""The testbed's supervised warm start: the format, the variant's filler, each skill to mid accuracy, and a
text-only mode.

A `text_only_share` of the examples go through the blind view: the visual tokens (and vision markers) masked out of
attention with every text token at its original mRoPE position (pgpo.models.blind_sequence.blind_inputs, the construction the
attention_mask blind view uses in training), with an answer drawn uniformly from the skill's answers. The model
thus learns what to say without the image (the same filler, a uniform answer), so PGPO's blind pass is on
distribution: S is about 0 on filler and template and large only on the answer token.
"""

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

from pgpo.methods.answer_span import answer_token_mask
from pgpo.data.datasets import Record, load_split
from pgpo.models.blind_sequence import blind_inputs
from pgpo.util.progress import iterate
from pgpo.tiny.sampling import accuracy, sample
from pgpo.tiny.warmstart import WarmStartConfig, noisy_answers
from pgpo.tiny.warmstart import _batch as supervised_batch
from pgpo.util.atomic import write_atomic
from pgpo.util.provenance import code_version, dir_hash, machine, sha256_file


@dataclass
class TestbedWarmStartConfig(WarmStartConfig):
    """Warm start of one testbed variant (the fields of the tiny warm start, plus these)."""

    variant: str = ""
    """The variant whose warm-start split (warmstart_<variant>.jsonl) is learned."""
    text_only_share: float = 0.15
    """Share of examples trained through the blind view with a uniformly random answer of their skill."""
    skill_steps: int = 0
    """Steps of a first phase before `steps`: clean labels, no filler (`<think></think>\\boxed{answer}`), no
    text-only examples. The tiny vision tower learns a skill in a step-like way and slowly; with 48 filler tokens in
    every target the one answer token's gradient is diluted and the skills stayed at chance in 600 steps (measured
    2026-12-03), so the skills are learned on short targets first and the filler, noise and blind mode after."""
    skill_lr: float | None = None
    """Learning rate of the skill phase (None = lr). The filler phase fine-tunes a model that already has the
    skills: at the skill phase's 2e-3 its greedy accuracy swung between 0 and 0.5 from one check to the next."""
    answer_weight: float = 1.0
    """Loss weight of the answer token(s) relative to every other target token (the L filler tokens carry an
    irreducible ln W nats each and would otherwise drown the one token that needs the image)."""
    schedule: str = "constant"
    """Learning rate within each phase after its warm-up: `constant`, or `cosine` (decayed to zero at the phase's
    last step, so each phase ends at a settled point). At a constant 2e-3 the skill phase never settled: greedy
    digit accuracy 0.69, 0.19, 0.31, 0.66 at steps 400-700, and another CPU's float kernels ended it elsewhere."""
    skill_criterion: float = 0.0
    """End the skill phase at the first check (every eval_every steps) where every skill's greedy accuracy reaches
    this; skill_steps is then a cap (and the length of the cosine). 0 = always run skill_steps. When > 0, the checks
    use the last eval_items items of each skill's warm-start split, held out of training, not the evaluation suites
    (a stopping rule must not select on the data the gates and evaluations measure). Why: a fixed step count left
    the digit skill anywhere in 0.53-1.00 greedy depending on seed and CPU kernels (measured 2026-12-03)."""
    freeze_vision_after_skills: bool = False
    """Freeze the vision tower (model.visual) in the filler phase. The filler, the format, the label noise and the
    text-only mode are the language model's to learn; trained end to end at lr 1e-3 the filler phase knocked a
    learned skill from 1.00 to 0.44 greedy before it partly recovered (measured 2026-12-03)."""

    def __post_init__(self):
        if not self.variant:
            raise ValueError("variant: required (the data folder's warmstart_<variant>.jsonl)")
        if not 0.0 <= self.text_only_share < 1.0:
            raise ValueError(f"text_only_share must be in [0, 1), got {self.text_only_share}")
        if self.skill_steps < 0:
            raise ValueError(f"skill_steps must be >= 0, got {self.skill_steps}")
        if self.skill_lr is not None and self.skill_lr <= 0.0:
            raise ValueError(f"skill_lr must be > 0, got {self.skill_lr}")
        if self.answer_weight <= 0.0:
            raise ValueError(f"answer_weight must be > 0, got {self.answer_weight}")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise}")
        if not 0.0 <= self.skill_criterion <= 1.0:
            raise ValueError(f"skill_criterion must be in [0, 1], got {self.skill_criterion}")
        if self.skill_criterion > 0 and not (self.skill_steps and self.eval_every):
            raise ValueError("skill_criterion needs skill_steps (the cap) and eval_every (the checks) > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, cfg: TestbedWarmStartConfig, skill_end: int | None = None) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based): each phase (skill steps, then steps) warms up
    linearly over warmup_steps to its peak (skill_lr, then lr), then holds it (`constant`) or follows a half cosine
    that reaches zero after the phase's last step (`cosine`; the skill phase's cosine spans skill_steps, its cap).
    skill_end: the step count at which the skill phase ended (None = skill_steps; earlier under skill_criterion)."""
    skill_end = cfg.skill_steps if skill_end is None else skill_end
    in_skills = step < skill_end
    start, length = (0, cfg.skill_steps) if in_skills else (skill_end, cfg.steps)
    peak = (cfg.skill_lr or cfg.lr) / cfg.lr if in_skills else 1.0
    t = step - start
    warm = min(1.0, (t + 1) / max(1, cfg.warmup_steps))
    if cfg.schedule == "constant":  # one warm-up from step 0, as the reference warm start was made
        return peak * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    return peak * warm * 0.5 * (1.0 + math.cos(math.pi * t / max(1, length)))


def skill_answers(records: list[Record]) -> dict[str, list[str]]:
    """Every answer of each skill, in first-seen order (the support of the text-only mode's random answer)."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r.answer not in out.setdefault(r.task, []):
            out[r.task].append(r.answer)
    return out


def variant_length(data_dir: str | Path, variant: str) -> int:
    """L of a variant, from the data's MANIFEST (what the warm-start targets were written with)."""
    from pgpo.testbed.data import data_config

    config = data_config(data_dir)
    if variant not in config["variants"]:
        raise ValueError(f"{data_dir}: no variant {variant!r}; the data has {sorted(config['variants'])}")
    return int(config["variants"][variant]["length"])


def _summed_loss(model, batch: dict, blind: bool, answer: torch.Tensor | None = None,
                 answer_weight: float = 1.0) -> tuple[torch.Tensor, float]:
    """Weighted summed token cross-entropy of the targets and the summed weight (1 per target token, answer_weight
    on the tokens `answer` [B,L] marks); `blind`: through the attention-mask blind view."""
    labels = batch["labels"]
    if blind:
        inputs = blind_inputs(model, batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"],
                              batch["image_grid_thw"], logits_to_keep=labels.size(1), drop=False)
        inputs.pop("label_mask")
    else:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    valid = target != -100
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp_min(0), reduction="none")
    weight = valid.float()
    if answer is not None and answer_weight != 1.0:
        weight = weight + (answer_weight - 1.0) * (answer[:, 1:] & valid).float()
    return (ce * weight).sum(), float(weight.sum())


def _step_loss(model, processor, seeing: list[Record], blind: list[Record], answer_weight: float) -> torch.Tensor:
    """One step's loss: the weighted token cross-entropy of the seeing and the blind examples, pooled over all their
    target tokens (one mean, so a step's blind share does not change a token's weight)."""
    total, count = torch.zeros(()), 0
    for rows, is_blind in ((seeing, False), (blind, True)):
        if rows:
            batch = supervised_batch(processor, rows)
            answer = answer_token_mask(batch["input_ids"], (batch["labels"] != -100).long(), processor.tokenizer)
            summed, n = _summed_loss(model, batch, is_blind, answer, answer_weight)
            total, count = total + summed, count + n
    return total / max(count, 1)


def check_items(clean: list[Record], skills: list[str], data_dir: Path, cfg: TestbedWarmStartConfig
                ) -> tuple[list[Record], list[Record]]:
    """(training records, held-out check records). Under skill_criterion the checks are the last eval_items of each
    skill's warm-start split, removed from training; otherwise the first eval_items of each suite (monitoring only,
    the curve the reference warm start E recorded)."""
    if cfg.skill_criterion <= 0:
        return clean, [r for s in skills for r in load_split(data_dir / f"suite_{s}.jsonl")[:cfg.eval_items]]
    held = [r for s in skills for r in [x for x in clean if x.task == s][-cfg.eval_items:]]
    ids = {r.id for r in held}
    return [r for r in clean if r.id not in ids], held


def freeze_vision(model) -> int:
    """Stop training the vision tower (model.visual.*); returns the number of parameters frozen. Their grads stay
    None, so AdamW and the gradient clipping skip them."""
    frozen = [p for n, p in model.named_parameters() if n.startswith(("model.visual.", "visual."))]
    for p in frozen:
        p.requires_grad_(False)
    return sum(p.numel() for p in frozen)


def skill_criterion_met(acc: dict, skills: list[str], criterion: float) -> bool:
    """Every skill's greedy accuracy at or above the criterion (acc: {skill: accuracy, ..., 'all': ...})."""
    return all(acc[s] >= criterion for s in skills)


def testbed_warm_start(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                       cfg: TestbedWarmStartConfig) -> dict:
    """Fine-tune model_dir on data_dir/warmstart_<variant>.jsonl; save to out_dir with warmstart.json (the curve of
    held-out greedy accuracy per skill, as the tiny warm start writes it, and where the skill phase ended)."""
    from pgpo.models.loading import load_model
    from pgpo.models.processor import load_processor

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    data_dir = Path(data_dir)
    length = variant_length(data_dir, cfg.variant)
    processor = load_processor(model_dir)
    model = load_model(model_dir)
    answers = skill_answers(load_split(data_dir / f"warmstart_{cfg.variant}.jsonl"))
    skills = list(answers)
    clean, held = check_items(load_split(data_dir / f"warmstart_{cfg.variant}.jsonl"), skills, data_dir, cfg)
    train = noisy_answers(clean, cfg.label_noise, random.Random(cfg.seed + 1))
    short = [dataclasses.replace(r, rationale="") for r in clean]  # phase 1: the skills on short, clean targets
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    orders: dict[int, list[int]] = {0: [], 1: []}
    curve, start, blind_seen, frozen = [], time.perf_counter(), 0, 0
    skill_end = cfg.skill_steps
    for step in iterate(range(1, cfg.skill_steps + cfg.steps + 1), desc="testbed warm-start", unit="step"):
        if step > skill_end + cfg.steps:
            break
        phase = 0 if step <= skill_end else 1
        if phase == 1 and cfg.freeze_vision_after_skills and not frozen:
            frozen = freeze_vision(model)
        seeing, blind = _draw_batch(short if phase == 0 else train, orders[phase], rng, cfg, phase == 1, answers)
        blind_seen += len(blind)
        model.train()
        loss = _step_loss(model, processor, seeing, blind, cfg.answer_weight if phase else 1.0)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"testbed warm start diverged at step {step} (loss {loss.item()}); "
                                     f"lower lr={cfg.lr}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        used_lr = cfg.lr * lr_factor(step - 1, cfg, skill_end)
        for group in opt.param_groups:
            group["lr"] = used_lr
        opt.step(), opt.zero_grad(set_to_none=True)
        if step in (skill_end, skill_end + cfg.steps) or (cfg.eval_every and step % cfg.eval_every == 0):
            acc = accuracy(held, sample(model, processor, held, k=1, temperature=0.0, max_new_tokens=length + 16))
            curve.append({"step": step, "phase": "skills" if phase == 0 else "filler",
                          "seconds": round(time.perf_counter() - start, 1), "lr": used_lr,
                          "loss": loss.item(), "greedy_accuracy": acc})
            tqdm.write(json.dumps(curve[-1]))
            if phase == 0 and cfg.skill_criterion > 0 and skill_criterion_met(acc, skills, cfg.skill_criterion):
                skill_end = step
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    met = (skill_criterion_met(next(c for c in reversed(curve) if c["step"] == skill_end)["greedy_accuracy"], skills,
                               cfg.skill_criterion) if cfg.skill_criterion > 0 else None)
    skill_phase = {"steps": skill_end, "criterion_met": met, "check_items": len(held), "vision_params_frozen": frozen}
    return _write_report(model_dir, data_dir, out, cfg, length, skill_phase, blind_seen, curve)


def _draw_batch(rows: list[Record], order: list[int], rng: random.Random, cfg: TestbedWarmStartConfig,
                text_only: bool, answers: dict[str, list[str]]) -> tuple[list[Record], list[Record]]:
    """The next batch_size rows of a phase's shuffled order (refilled with a new permutation when short), split into
    (seeing, blind): with `text_only` (the filler phase) each row goes through the blind view with a random answer of
    its skill at cfg.text_only_share (one rng draw per row either way: the reference warm start's stream)."""
    if len(order) < cfg.batch_size:
        order += rng.sample(range(len(rows)), len(rows))
    seeing, blind = [], []
    for r in [rows[order.pop()] for _ in range(cfg.batch_size)]:
        if text_only and rng.random() < cfg.text_only_share:
            blind.append(dataclasses.replace(r, answer=rng.choice(answers[r.task])))
        else:
            seeing.append(r)
    return seeing, blind


def _write_report(model_dir, data_dir: Path, out: Path, cfg: TestbedWarmStartConfig, length: int, skill_phase: dict,
                  blind_seen: int, curve: list[dict]) -> dict:
    """warmstart.json: config, inputs and their hashes, where the skill phase ended, the curve, code and machine."""
    report = {"config": asdict(cfg), "base": str(model_dir), "data": str(data_dir), "filler_length": length,
              "skill_phase": skill_phase, "text_only_examples": blind_seen,
              "examples": (skill_phase["steps"] + cfg.steps) * cfg.batch_size, "curve": curve,
              "code_version": code_version(), "machine": machine(),
              "inputs": {"base_hash": dir_hash(model_dir), "data_manifest_sha256": sha256_file(data_dir /
                                                                                             "MANIFEST.json")},
              "weights_hash": dir_hash(out, ("*.safetensors",))}
    write_atomic(out / "warmstart.json", json.dumps(report, indent=2))
    return report
