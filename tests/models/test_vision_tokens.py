"""Vision special tokens sampled by the policy (TRL #3847, R1-V #91): suppressed at sampling for both engines,
and, where one is sampled anyway, replaced before any forward, masked out of the loss and counted.

The untrained tiny model samples them: under TRL's own HF default (only <|image_pad|> suppressed) it samples
<|video_pad|> and the vision markers, and with nothing suppressed (TRL's vLLM path) <|image_pad|> too, which
crashes TRL's next forward. The real TRL steps below show each of these on fixed seeds."""

import json
from pathlib import Path

import pytest
import torch

from pgpo.config.schema import REPO, load_method, load_train_config
from pgpo.models.vision_tokens import (hf_sampling_kwargs, mask_completions, replace_vision_tokens, sampling_kwargs,
                                vision_tokens, vllm_sampling_kwargs)

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen"
TINY_VISION = {"<|vision_start|>": 9, "<|vision_end|>": 10, "<|vision_pad|>": 11, "<|image_pad|>": 12,
               "<|video_pad|>": 13}


def test_vision_tokens_come_from_the_tokenizer_tiny_and_real_qwen(tiny):
    from pgpo.models.processor import load_processor

    _, processor = tiny
    assert vision_tokens(processor) == TINY_VISION
    assert vision_tokens(processor.tokenizer) == TINY_VISION  # a bare tokenizer: the same five by name
    real = vision_tokens(load_processor(QWEN))
    assert real == {"<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
                    "<|image_pad|>": 151655, "<|video_pad|>": 151656}
    # what vLLM's bad_words does with each word (SamplingParams.update_from_tokenizer): one token, this id
    tok = load_processor(QWEN).tokenizer
    assert all(tok.encode(name, add_special_tokens=False) == [i] for name, i in real.items())


def test_sampling_kwargs_are_engine_specific():
    from transformers import GenerationConfig

    hf, vllm = sampling_kwargs(TINY_VISION, use_vllm=False), sampling_kwargs(TINY_VISION, use_vllm=True)
    assert hf == hf_sampling_kwargs(TINY_VISION) == {"suppress_tokens": [9, 10, 11, 12, 13]}
    assert vllm == vllm_sampling_kwargs(TINY_VISION) == {"bad_words": list(TINY_VISION)}
    assert GenerationConfig(**hf).suppress_tokens == [9, 10, 11, 12, 13]
    assert sampling_kwargs({}, use_vllm=False) == {} == sampling_kwargs({}, use_vllm=True)
    json.dumps(vllm)  # TRL's server mode sends generation_kwargs as JSON


def test_replace_and_mask_a_completion_holding_vision_tokens():
    ids, hits = replace_vision_tokens([[5, 12, 6], [7, 8], [13, 9, 13, 2]], [9, 10, 11, 12, 13], replacement=0)
    assert ids == [[5, 0, 6], [7, 8], [0, 0, 0, 2]] and hits == [1, 0, 3]
    mask = torch.ones(3, 4, dtype=torch.long)
    out = mask_completions(mask, torch.tensor(hits) > 0)
    assert out.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]] and out.dtype == torch.long


def _trainer(tiny_dir, tiny_data, out, suppress):
    """A grpo trainer on the UNTRAINED tiny model, 16 completions of 32 tokens a step; `suppress`: what HF
    generate suppresses ('pgpo': our generation_kwargs, 'trl': TRL's own default, 'none': nothing, as vLLM
    without our kwargs)."""
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4,
                       "max_completion_length": 32},
           "micro_batch": 8, "max_steps": 1, "save_steps": 100}
    trainer = build_trainer(load_train_config(REPO / "workflows/config/train/tiny.yaml", raw), load_method("grpo"),
                            out)
    assert trainer.generation_config.suppress_tokens == list(TINY_VISION.values())  # our generation_kwargs
    if suppress == "trl":
        trainer.generation_config.suppress_tokens = [TINY_VISION["<|image_pad|>"]]  # TRL 1.16's own default
    elif suppress == "none":
        trainer.generation_config.suppress_tokens = None
    return trainer


def _step(trainer, out):
    trainer.train()
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return row


@pytest.mark.slow
def test_an_untrained_policy_samples_vision_tokens_only_without_our_suppression(tiny_dir, tiny_data, tmp_path):
    """Same seed, same step: TRL's default lets <|video_pad|> and the markers through; ours samples none."""
    counts = {}
    for suppress in ("trl", "pgpo"):
        row = _step(_trainer(tiny_dir, tiny_data, tmp_path / suppress, suppress), tmp_path / suppress)
        counts[suppress] = (row["faults/vision_token_completions"], row["faults/vision_tokens"])
    assert counts["trl"][0] >= 1 and counts["trl"][1] >= 1, counts
    assert counts["pgpo"] == (0.0, 0.0), counts
    # scripts/gpu_smoke.sh's known_bugs line reads the same statistic from its runs: passes ours, fails TRL's
    from pgpo.diagnostics.known_bugs import vision_token_check
    from pgpo.models.processor import load_processor

    processor = load_processor(tiny_dir)
    assert "pgpo 0 in 1 steps" in vision_token_check(processor, [tmp_path / "pgpo"])
    with pytest.raises(AssertionError, match=r"trl: \d+ vision token\(s\) sampled over 1 steps"):
        vision_token_check(processor, [tmp_path / "trl"])


@pytest.mark.slow
def test_a_sampled_image_pad_crashes_trl_unless_masked_and_counted(tiny_dir, tiny_data, tmp_path):
    """Nothing suppressed (TRL's vLLM path before the fix): the untrained model samples <|image_pad|>. Without
    the screen TRL's forward raises; with it the step trains and logs the completions it masked."""
    from pgpo.training.trl_bridge import TRLBridge

    bare = _trainer(tiny_dir, tiny_data, tmp_path / "bare", "none")
    bare.screen_completions = lambda ids: TRLBridge.screen_completions(bare, ids)  # the bridge's no-op
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        bare.train()
    row = _step(_trainer(tiny_dir, tiny_data, tmp_path / "screened", "none"), tmp_path / "screened")
    assert row["faults/vision_token_completions"] >= 1 and row["faults/vision_tokens"] >= 1
    assert row["faults/vision_tokens"] >= row["faults/vision_token_completions"]
    assert torch.isfinite(torch.tensor(row["loss"])) and row["faults/skipped_microbatch_fraction"] == 0.0


@pytest.mark.slow
def test_the_rollout_masks_exactly_the_completions_that_held_a_vision_token(tiny_dir, tiny_data, tmp_path):
    trainer = _trainer(tiny_dir, tiny_data, tmp_path, "none")
    trainer.model.train()
    seen = {}
    original = trainer.screen_completions

    def spy(ids):  # the raw samples, before the screen replaces anything
        seen["raw"] = [list(map(int, row)) for row in ids]
        return original(ids)

    trainer.screen_completions = spy
    torch.manual_seed(2)
    rows = [trainer.train_dataset[i] for i in range(4) for _ in range(trainer.num_generations)]
    out = trainer.rollout(rows)
    vision = set(TINY_VISION.values())
    held = torch.tensor([any(t in vision for t in row) for row in seen["raw"]])
    assert held.any(), "this seed samples vision tokens (5 of 16 completions when written)"
    assert not any(int(t) in vision for t in out["completion_ids"].flatten())  # nothing left for the forward
    assert (out["completion_mask"][held] == 0).all() and (out["completion_mask"][~held].sum(1) > 0).all()
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert trainer._metrics["train"]["faults/vision_token_completions"][-1] == float(held.sum())
