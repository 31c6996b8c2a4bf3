"""Checks of the field's known silent VLM-GRPO bugs on whatever machine runs them (scripts/gpu_smoke.sh's
`known_bugs` line; the CPU test suite covers each in depth: the tests named below). One PASS/FAIL line each:

- TRL #3847 / R1-V #91, vision tokens sampled by the policy: the checkpoint's vision tokens are found and each
  encodes to itself (what vLLM's bad_words does with them), and every step of the given training runs (an
  untrained model samples them when nothing suppresses them) logged faults/vision_tokens == 0: the rollout
  engine that ran suppressed them. (tests/models/test_vision_tokens.py)
- TRL #5785, padding direction vs multimodal token types: a left-padded batch of prompts of different lengths
  has its image marks on its image tokens (pgpo.models.vision_tokens.misaligned_visual_rows), and the detector flags the
  same batch padded on the right. Every training rollout runs the same check. (tests/models/test_padding_alignment.py)
- Dynamic sampling vs float rounding: TRL's group-relative advantages of groups with equal rewards (0.1, 0.9,
  1.0; 5 and 8 rollouts) computed on the device leave rounding noise; the reward-spread rule drops every such group
  and gives it advantage exactly 0, and keeps a group whose rewards differ. (tests/training/test_dynamic_sampling.py,
  tests/training/test_dynamic_sampling_steps.py)

Usage: python -m pgpo.diagnostics.known_bugs --model DIR --data DIR [--runs RUN_DIR ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pgpo.records.stages import read_metrics
from pgpo.training.dynamic_sampling import groups_with_signal, zero_signal_advantages
from pgpo.models.vision_tokens import misaligned_visual_rows, sampling_kwargs, vision_tokens


def vision_token_check(processor, runs: list[Path]) -> str:
    tokens = vision_tokens(processor)
    if processor.image_token not in tokens or processor.video_token not in tokens:
        raise AssertionError(f"the processor's placeholders are not among the vision tokens {tokens}")
    counts = []
    for run in runs:
        rows = read_metrics(run)
        missing = [r["step"] for r in rows if "faults/vision_tokens" not in r]
        if not rows or missing:
            raise AssertionError(f"{run}: no faults/vision_tokens logged (steps {missing or 'none'})")
        sampled = sum(r["faults/vision_tokens"] for r in rows)
        if sampled:
            raise AssertionError(f"{run}: {sampled:g} vision token(s) sampled over {len(rows)} steps: the rollout "
                                 "engine did not suppress them (they were masked and counted instead)")
        counts.append(f"{run.name} 0 in {len(rows)} steps")
    return (f"{len(tokens)} vision tokens {sorted(tokens.values())}; HF {sampling_kwargs(tokens, False)}, vLLM "
            f"{sampling_kwargs(tokens, True)}; sampled: {', '.join(counts) or 'no runs given'}")


def padding_check(processor, data: Path) -> str:
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts

    records, tasks = [], set()
    for record in load_split(data / "train.jsonl"):  # one record per task: prompts of different lengths
        if record.task not in tasks:
            records.append(record)
            tasks.add(record.task)
    tok = processor.tokenizer
    encoded = {}
    for side in ("left", "right"):  # TRL pads prompt_ids on the left itself and takes the token types from a
        tok.padding_side = side     # second processor call, padded on the tokenizer's side
        encoded[side] = processor(images=load_images(records), text=prompt_texts(processor, records),
                                  padding=True, return_tensors="pt")
    tok.padding_side = "left"
    ids = encoded["left"]["input_ids"]
    found = {side: misaligned_visual_rows(ids, enc["mm_token_type_ids"], enc["image_grid_thw"],
                                          [len(r.images) for r in records], processor.image_token_id,
                                          processor.video_token_id, processor.image_processor.merge_size)
             for side, enc in encoded.items()}
    lengths = sorted({int(n) for n in encoded["left"]["attention_mask"].sum(1)})
    if found["left"]:
        raise AssertionError(f"left-padded batch misaligned: {found['left']}")
    if not found["right"] and len(lengths) > 1:  # what TRL #5785 does to a right-padding processor
        raise AssertionError("the detector missed the right-padded batch's misaligned image marks")
    return f"{len(records)} prompts of {len(lengths)} lengths aligned; right padding flagged in {len(found['right'])}"


def rounding_check(device: str) -> str:
    """TRL 1.16's advantages (sum_then_normalize, scale_rewards group) of equal-reward groups, on `device`."""
    from pgpo.training.trl_bridge import nanstd

    noise = {}
    weights = torch.tensor([0.9, 0.1], device=device)
    for per_func in ([0.0, 1.0], [1.0, 0.0], [1.0, 1.0]):
        for g in (5, 8):
            rewards = (torch.tensor([per_func] * g + [[0.0, 0.0]] * (g - 1) + [[1.0, 1.0]], device=device)
                       * weights).nansum(dim=1)  # an equal group, then one whose rewards differ
            grouped = rewards.view(-1, g)
            mean = torch.nanmean(grouped, dim=1).repeat_interleave(g)
            advantages = (rewards - mean) / (nanstd(grouped, dim=1).repeat_interleave(g) + 1e-4)
            keep = groups_with_signal(rewards, g)
            if keep.tolist() != [False, True]:
                raise AssertionError(f"rewards {per_func} x {g}: kept {keep.tolist()}, expected [False, True]")
            fixed = zero_signal_advantages(advantages, keep, g)
            if fixed[:g].abs().max() != 0 or not torch.equal(fixed[g:], advantages[g:]):
                raise AssertionError(f"rewards {per_func} x {g}: advantages {fixed.tolist()}")
            noise[f"{sum(a * w for a, w in zip(per_func, (0.9, 0.1))):.1f}x{g}"] = advantages[:g].abs().max().item()
    return "equal-reward groups dropped, advantage exactly 0 (TRL's noise " + ", ".join(
        f"{k}: {v:.1e}" for k, v in noise.items()) + ")"


def main(argv: list[str] | None = None) -> int:
    from pgpo.models.processor import load_processor

    p = argparse.ArgumentParser(prog="python -m pgpo.diagnostics.known_bugs", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory (its processor is checked)")
    p.add_argument("--data", required=True, help="a data directory with train.jsonl")
    p.add_argument("--runs", nargs="*", default=[], help="training output directories (metrics.jsonl)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    processor = load_processor(args.model)
    checks = {"vision_tokens (TRL #3847, R1-V #91)": lambda: vision_token_check(processor, map_paths(args.runs)),
              "padding_side (TRL #5785)": lambda: padding_check(processor, Path(args.data)),
              "dynamic_sampling_rounding": lambda: rounding_check(args.device)}
    failed = 0
    for name, check in checks.items():
        try:
            print(f"PASS {name}: {check()}")
        except (AssertionError, OSError, ValueError, KeyError) as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    return 1 if failed else 0


def map_paths(paths: list[str]) -> list[Path]:
    return [Path(p) for p in paths]


if __name__ == "__main__":
    sys.exit(main())
