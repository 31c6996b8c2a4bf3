"""Check the blind pass against its definition: image tokens masked out of attention == image tokens removed.

pgpo.training.blind_forward.blind_forward keeps the full sequence and masks the visual span (vision markers + image pads) out
of attention, with every text token at its mRoPE position of the full sequence. Its definition is the text-only
context: the same sequence with the visual span deleted and the original positions kept. This runs both on a
real rollout batch (prompt + a fixed completion per record) and compares the completion log-probs, so a kernel or
mask path that lets masked tokens leak (e.g. a fused attention ignoring a mask with holes) shows up as a
difference. Used by scripts/gpu_smoke.sh in bf16 on a GPU; runs on CPU too (tests).
Usage: python -m pgpo.diagnostics.blind_check --model DIR --data DIR [--device cuda] [--dtype bfloat16] [--tol 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

COMPLETIONS = ["<think>I count the squares.</think>\\boxed{3}", "<think>I look.</think>\\boxed{red}",
               "<think>I read the digit.</think>\\boxed{7}", "<think>It is left.</think>\\boxed{A}"]


@torch.no_grad()
def dropped_span_logprobs(model, enc, logits_to_keep: int, renumber: bool = False) -> torch.Tensor:
    """Completion log-probs of each row with its visual span (and padding) deleted, positions kept from the full
    sequence (renumber=True gives the deleted sequence fresh positions instead: the wrong definition)."""
    from pgpo.methods.dependency import completion_logprobs, visual_span_mask
    from pgpo.models.blind_sequence import mrope_position_ids

    cfg = model.config
    ids, attn, mm = enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"]
    positions = mrope_position_ids(model, ids, attn, mm, enc["image_grid_thw"])
    visual = visual_span_mask(ids, mm, cfg.vision_start_token_id, cfg.vision_end_token_id)
    rows = []
    for b in range(ids.shape[0]):
        keep = attn[b].bool() & ~visual[b]
        row_ids = ids[b][keep][None]
        pos = positions[:, b][:, keep][:, None]
        if renumber:
            pos = torch.arange(row_ids.shape[1], device=ids.device).view(1, 1, -1).expand(3, 1, -1)
        out = model(input_ids=row_ids, attention_mask=torch.ones_like(row_ids), position_ids=pos,
                    logits_to_keep=logits_to_keep + 1, use_cache=False)
        rows.append(completion_logprobs(out.logits[:, :-1], row_ids[:, -logits_to_keep:])[0])
    return torch.stack(rows)


def batch(processor, records, device) -> tuple[dict, int]:
    """Left-padded prompt + completion batch as TRL lays it out; returns (tensors, completion length)."""
    from pgpo.tiny.sampling import load_images, prompt_texts

    tok = processor.tokenizer
    tok.padding_side = "left"
    # equal-length completions, so the last T tokens of every row are completion tokens
    comp = [tok(c, add_special_tokens=False)["input_ids"] for c in COMPLETIONS[:len(records)]]
    t = min(len(c) for c in comp)
    texts = [p + tok.decode(c[:t]) for p, c in zip(prompt_texts(processor, records), comp)]
    enc = processor(images=load_images(records), text=texts, padding=True, return_tensors="pt").to(device)
    return dict(enc), t


def check(model_dir: str, data_dir: str, device: str = "cpu", dtype: str = "float32", tol: float = 1e-4,
          n: int = 4) -> dict:
    from pgpo.data.datasets import load_split
    from pgpo.models.loading import load_model
    from pgpo.training.blind_forward import blind_forward
    from pgpo.models.processor import load_processor

    processor = load_processor(model_dir)
    model = load_model(model_dir, dtype, attn_implementation="sdpa", eval_mode=True).to(device)
    records = load_split(Path(data_dir) / "train.jsonl")[:n]
    enc, t = batch(processor, records, device)
    blind = blind_forward(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                          enc["image_grid_thw"], logits_to_keep=t)
    dropped = dropped_span_logprobs(model, enc, t)
    renumbered = dropped_span_logprobs(model, enc, t, renumber=True)
    diff = (blind.float() - dropped.float()).abs().max().item()
    # the check must be able to fail: positions renumbered after the deletion are a different context
    control = (blind.float() - renumbered.float()).abs().max().item()
    return {"device": device, "dtype": dtype, "rows": len(records), "completion_tokens": t,
            "max_abs_diff": diff, "tolerance": tol, "renumbered_positions_diff": control,
            "passed": diff <= tol and bool(torch.isfinite(blind).all())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pgpo.diagnostics.blind_check", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="data directory made by `pgpo make-data` (train.jsonl)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tol", type=float, default=1e-4, help="max |blind - dropped| log-prob (bf16: 0.05)")
    a = p.parse_args(argv)
    result = check(a.model, a.data, a.device, a.dtype, a.tol)
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
