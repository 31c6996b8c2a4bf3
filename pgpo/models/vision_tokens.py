"""Vision special tokens in sampled completions (TRL #3847, R1-V #91): suppressed at sampling, masked if one slips.

A policy can sample `<|image_pad|>` (the untrained tiny model does: with nothing suppressed, 4 of the 16
32-token completions of its first step hold a vision token, tests/models/test_vision_tokens.py): the next forward counts one image placeholder more than the batch has image features, and Qwen2.5-VL raises "Image
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

Pure functions; the trainer (pgpo/training/trainer.py) and the GRPOConfig translation (pgpo/training/grpo_args.py) call them.
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
    generation_kwargs to ``SamplingParams(**...)`` in colocate mode, and in server mode into the JSON body of the
    OpenAI-compatible request, whose completion and chat protocols both have a ``bad_words`` field).

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


def misaligned_visual_rows(prompt_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor,
                           num_images: Sequence[int], image_id: int, video_id: int | None,
                           merge_size: int) -> list[str]:
    """Rows whose multimodal token types do not sit on their own placeholder tokens (TRL #5785), one line each.

    TRL pads prompt_ids on the left but takes mm_token_type_ids from a second processor call that pads on the
    tokenizer's side: padded on the right, the image marks of every shorter row sit off its image pads, so
    mRoPE and the blind view's visual span treat image tokens as text and text as image, silently. Checks, per
    row: mm_token_type_ids [B, P+T] is 1 exactly where prompt_ids [B, P] holds the image placeholder (2 at the
    video one) and 0 over the completion; the row's image placeholders number the visual tokens of its own
    images (image_grid_thw [n_images, 3] in row order, num_images [B]; merge_size**2 patches per token)."""
    width = prompt_ids.size(1)
    expected = (prompt_ids == image_id).long()
    if video_id is not None:
        expected = expected + 2 * (prompt_ids == video_id).long()
    tokens = (image_grid_thw.prod(dim=-1) // merge_size ** 2).tolist()
    problems, start = [], 0
    for row, n in enumerate(num_images):
        own = sum(tokens[start:start + n])
        start += n
        pads = int((prompt_ids[row] == image_id).sum())
        if not torch.equal(mm_token_type_ids[row, :width].to(expected.dtype), expected[row]):
            marked = int((mm_token_type_ids[row, :width] != 0).sum())
            off = int((mm_token_type_ids[row, :width].ne(0) & expected[row].eq(0)).sum())
            problems.append(f"row {row}: mm_token_type_ids mark {marked} prompt positions, {off} of them off the "
                            f"{pads} image placeholder tokens")
        elif mm_token_type_ids[row, width:].any():
            problems.append(f"row {row}: mm_token_type_ids mark completion tokens as visual")
        elif pads != own:
            problems.append(f"row {row}: {pads} image placeholder tokens for {n} image(s) of {own} visual tokens")
    return problems
