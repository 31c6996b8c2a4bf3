"""Vision special tokens in sampled completions (TRL #3847, R1-V #91): suppressed at sampling, masked if one slips.

A policy can sample `<|image_pad|>` (the untrained tiny model does: with nothing suppressed, 4 of the 16
32-token completions of its first step hold a vision token, tests/test_vision_tokens.py): the next forward counts one image placeholder more than the batch has image features, and Qwen2.5-VL raises "Image
features and image tokens do not match". TRL 1.16 suppresses only `<|image_pad|>` and only under HF generate;
its vLLM path suppresses nothing, and `<|video_pad|>` and the vision markers are sampled under both. The rule:

1. Suppressed at sampling, for both engines: every vision special token of the checkpoint's tokenizer gets
   probability 0 (HF generate: GenerationConfig ``suppress_tokens``; vLLM: SamplingParams ``bad_words``, see
   `vllm_sampling_kwargs`). These tokens are never a valid answer token, so nothing the policy should learn is
   lost, and the sampling distribution is the policy's renormalised over the remaining vocabulary (which is also
   what the trainer's log-probs see: tokens that are never sampled are never scored).
2. Fallback, for anything that still emits one (another engine, a rollout function, a tokenizer whose vision
   token is not found): the token is replaced by the pad id before TRL's first forward (so nothing can crash),
   and the whole completion is masked out of the loss (its tokens were not all sampled from the policy that is
   being optimised), counted as ``faults/vision_token_completions`` (and ``faults/vision_tokens``).

Pure functions; the trainer (pgpo/trainer.py) and the GRPOConfig translation (pgpo/grpo_args.py) call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

# The words in a special token's name that make it a vision token (Qwen2-VL family: <|vision_start|>,
# <|vision_end|>, <|vision_pad|>, <|image_pad|>, <|video_pad|>); the placeholders themselves come from the
# processor (image_token / video_token), which is what the processor expands into visual features.
_VISION_WORDS = ("vision", "image", "video")


def vision_tokens(processor) -> dict[str, int]:
    """Every vision special token of `processor` (a multimodal processor or a bare tokenizer) as {token: id}:
    the processor's image/video placeholders and the tokenizer's special tokens named after vision/image/video.
    Each must encode back to exactly its own id (vLLM's bad_words encodes the text). {} for a text-only
    tokenizer."""
    tok = getattr(processor, "tokenizer", processor)
    names = {getattr(processor, attr, None) for attr in ("image_token", "video_token")} - {None}
    for added in tok.added_tokens_decoder.values():
        if added.special and any(word in added.content.lower() for word in _VISION_WORDS):
            names.add(added.content)
    out = {}
    for name in sorted(names):
        token_id = tok.convert_tokens_to_ids(name)
        if token_id is None or token_id == tok.unk_token_id:
            continue  # the processor names a token the vocabulary does not hold: nothing to suppress
        encoded = tok.encode(name, add_special_tokens=False)
        if encoded != [token_id]:
            raise ValueError(f"vision token {name!r} (id {token_id}) encodes to {encoded}, not to itself: it "
                             "cannot be suppressed by name in vLLM (bad_words) and by id in HF generate alike")
        out[name] = token_id
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def hf_sampling_kwargs(tokens: Mapping[str, int]) -> dict:
    """GenerationConfig arguments (HF generate) that give every vision token probability 0. TRL 1.16 sets
    ``suppress_tokens=[image_token_id]`` itself and lets generation_kwargs replace it: this list includes it."""
    return {"suppress_tokens": sorted(tokens.values())} if tokens else {}


def vllm_sampling_kwargs(tokens: Mapping[str, int]) -> dict:
    """vLLM 0.31 SamplingParams arguments that give every vision token probability 0 (TRL 1.16 passes
    generation_kwargs to ``SamplingParams(**...)`` in colocate mode and in the JSON payload of server mode).

    ``bad_words``: vLLM tokenizes each word (`SamplingParams.update_from_tokenizer`, ``encode(text,
    add_special_tokens=False)``) and sets the logit of a one-token word to -inf at every step
    (`vllm/v1/sample/ops/bad_words.py`): exact, JSON-safe, and at most 5 of vLLM's 128 bad words. Not
    ``logit_bias`` (clamped to -100: not a zero probability) nor ``allowed_token_ids`` (the whole vocabulary)."""
    return {"bad_words": sorted(tokens, key=tokens.__getitem__)} if tokens else {}


def sampling_kwargs(tokens: Mapping[str, int], use_vllm: bool) -> dict:
    """GRPOConfig.generation_kwargs for the rollout engine (they are engine-specific: TRL hands them to
    GenerationConfig under HF generate and to SamplingParams under vLLM, and each rejects the other's keys)."""
    return vllm_sampling_kwargs(tokens) if use_vllm else hf_sampling_kwargs(tokens)


def replace_vision_tokens(completion_ids: Sequence[Sequence[int]], vision_ids: Sequence[int],
                          replacement: int) -> tuple[list[list[int]], list[int]]:
    """Every vision token of each completion (lists of token ids, as TRL's generation returns them) replaced by
    `replacement`, and the number each completion held. Lengths unchanged."""
    banned = set(vision_ids)
    ids, hits = [], []
    for row in completion_ids:
        row = [int(t) for t in row]
        hits.append(sum(t in banned for t in row))
        ids.append([replacement if t in banned else t for t in row] if hits[-1] else row)
    return ids, hits


def mask_completions(completion_mask: torch.Tensor, flagged: torch.Tensor) -> torch.Tensor:
    """completion_mask [B,T] with the rows where flagged [B] (bool) is True set to 0."""
    return completion_mask * (~flagged.to(completion_mask.device)).to(completion_mask.dtype)[:, None]
