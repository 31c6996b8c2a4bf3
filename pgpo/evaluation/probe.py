"""Held-out probe of a checkpoint: avg@k on the synthetic suites and where the visual dependency sits.

For each sampled completion it computes S_t (k3 between the image and blind passes, exactly as in training) and
splits tokens into answer tokens (inside the last \\boxed{...}) and the rest (think text, template): the paper's
"sparse and semantically pivotal" finding predicts far higher S on answer tokens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from pgpo.methods.answer_span import answer_token_mask
from pgpo.data.datasets import DataError, Record, load_split
from pgpo.methods.dependency import completion_logprobs, k3
from pgpo.training.blind_forward import blind_forward
from pgpo.util.progress import iterate
from pgpo.tiny.sampling import sample_batch
from pgpo.rewards.scoring import grade
from pgpo.methods.shaping import normalised_dependency
from pgpo.util.atomic import write_atomic


@torch.no_grad()
def probe(checkpoint: str | Path, data_dir: str | Path, tasks: list[str], items_per_task: int, k: int,
          temperature: float = 1.0, max_new_tokens: int = 24, threshold: float = 0.4, batch_size: int = 32,
          seed: int = 0, examples: int = 0) -> dict:
    """avg@k and dependency statistics per suite; with `examples`, also that many completions per suite token by
    token (the first sample of each of the first questions). `threshold`: the sparsity statistic is the share of
    tokens whose per-response min-max normalised log(1+S) is at least this (0.4: the paper's Figure 1 level)."""
    from pgpo.models.loading import load_model
    from pgpo.models.processor import load_processor

    torch.manual_seed(seed)
    processor = load_processor(checkpoint)
    model = load_model(checkpoint, eval_mode=True)
    tok = processor.tokenizer
    tok.padding_side = "left"
    # an under-trained model may emit vision tokens; fed back with the image they would not match its features
    vision_ids = tok.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"])
    records: list[Record] = [r for t in tasks for r in load_split(Path(data_dir) / f"suite_{t}.jsonl")[:items_per_task]]
    several = [r.id for r in records if len(r.images) != 1]
    if several:  # the pixel bookkeeping below lays out one image per question
        raise DataError(f"probe handles single-image suites; {len(several)} question(s) have several images: "
                        f"{several[:5]}")
    per_task: dict[str, dict[str, list[float]]] = {}
    kept: list[dict] = []
    start = time.perf_counter()
    for lo in iterate(range(0, len(records), batch_size), desc="probe", unit="batch"):
        chunk = records[lo:lo + batch_size]
        batch = sample_batch(model, processor, chunk, k, temperature, max_new_tokens, vision_ids)
        gen = torch.cat([batch["prompt"], batch["completion"]], dim=1)
        comp, comp_mask, grids, pixels = batch["completion"], batch["completion_mask"], batch["grids"], batch["pixels"]
        attention = torch.cat([batch["prompt_mask"], comp_mask], dim=1)
        mm = torch.cat([batch["mm"], torch.zeros_like(comp)], dim=1)
        t = comp.size(1)
        logits = model(input_ids=gen, attention_mask=attention, mm_token_type_ids=mm, pixel_values=pixels,
                       image_grid_thw=grids, logits_to_keep=t + 1).logits[:, :-1]
        logp_image = completion_logprobs(logits, comp, temperature)
        logp_blind = blind_forward(model, gen, attention, mm, grids, t, temperature)
        s = k3(logp_image, logp_blind, comp_mask)
        importance, _ = normalised_dependency(s, comp_mask)
        for row in range(gen.size(0)):
            record = chunk[row // k]
            n = int(comp_mask[row].sum())
            ids = comp[row, :n].tolist()
            text = tok.decode(ids, skip_special_tokens=True)
            is_answer = torch.tensor(answer_token_mask(torch.tensor([ids]), torch.ones(1, len(ids)), tok)[0].tolist()
                                     + [False] * (t - n))
            valid = comp_mask[row].bool()
            stats = per_task.setdefault(record.task, {"score": [], "s_answer": [], "s_other": [], "above": []})
            stats["score"].append(grade(text, record.answer, record.choices))
            stats["s_answer"] += s[row][is_answer & valid].tolist()
            stats["s_other"] += s[row][~is_answer & valid].tolist()
            stats["above"] += (importance[row][valid] >= threshold).float().tolist()
            if row % k == 0 and sum(e["task"] == record.task for e in kept) < examples:  # per suite, 1 per question
                kept.append({"task": record.task, "answer": record.answer, "correct": stats["score"][-1],
                             "tokens": [tok.decode([i]) for i in ids], "s": s[row, :n].tolist(),
                             "answer_token": is_answer[:n].tolist()})
    summary = {task: _summarise(v) for task, v in sorted(per_task.items())}
    summary["all"] = _summarise({key: [x for v in per_task.values() for x in v[key]]
                                 for key in ("score", "s_answer", "s_other", "above")})
    return {"checkpoint": str(checkpoint), "k": k, "items_per_task": items_per_task, "temperature": temperature,
            "threshold": threshold, "seconds": round(time.perf_counter() - start, 1), "suites": summary, "examples": kept}


def _summarise(stats: dict[str, list[float]]) -> dict:
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return {"avg_at_k": mean(stats["score"]), "s_answer_mean": mean(stats["s_answer"]),
            "s_other_mean": mean(stats["s_other"]), "share_above_gate": mean(stats["above"]),
            "answer_tokens": len(stats["s_answer"]), "other_tokens": len(stats["s_other"])}


def write_probe(result: dict, out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out), json.dumps(result, indent=2))
