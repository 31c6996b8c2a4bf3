"""Which completion tokens are the final answer: the tokens that carry the characters inside the last
\\boxed{...} (the span pgpo.rewards.scoring.last_boxed grades). Shared by the oracle shaper, the answer-share statistics and
the credit-assignment testbed's gates, so "the answer token" means one thing everywhere.

Character spans are mapped to tokens through per-token decoding (cumulative lengths, linear in the completion
length: it runs on every training step); byte-level pieces of one multi-byte character are decoded together.
"""

from __future__ import annotations

import re

import torch

from pgpo.data.prompts import matched_braces

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def answer_char_span(text: str) -> tuple[int, int] | None:
    """[start, end) of the content of the last closed \\boxed{...} in `text`, None if there is none. The same box
    pgpo.rewards.scoring.last_boxed reads (its content is text[start:end])."""
    starts = [m.end() for m in _BOX.finditer(text or "")]
    if not starts:
        return None
    close = matched_braces(text)
    for start in reversed(starts):
        end = close.get(start - 1)
        if end is not None:
            return start, end
    return None


def token_char_spans(ids: list[int], tokenizer) -> list[tuple[int, int]]:
    """[start, end) of every token's characters in the decoded text of `ids` (special tokens kept). Tokens that
    decode only together (byte-level pieces of one multi-byte character: alone they decode to U+FFFD) share the
    span of their run. Linear in len(ids); if the runs still do not add up to the full decode, every prefix is
    decoded (exact, quadratic)."""
    full = tokenizer.decode(ids, skip_special_tokens=False)
    spans: list[tuple[int, int]] = []
    total, run = 0, []
    for t in ids:
        run.append(t)
        piece = tokenizer.decode(run, skip_special_tokens=False)
        if piece.endswith("\ufffd") and len(run) < 4:  # an incomplete UTF-8 character: take the next byte too
            continue
        spans += [(total, total + len(piece))] * len(run)
        total, run = total + len(piece), []
    if run:
        piece = tokenizer.decode(run, skip_special_tokens=False)
        spans += [(total, total + len(piece))] * len(run)
        total += len(piece)
    if total == len(full):
        return spans
    ends = [len(tokenizer.decode(ids[:i + 1], skip_special_tokens=False)) for i in range(len(ids))]
    return list(zip([0, *ends[:-1]], ends))


def answer_token_mask(completion_ids: torch.Tensor, completion_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """True on the tokens of each completion that overlap the content of its last \\boxed{...}.
    completion_ids, completion_mask [B,T] (mask 1 on response tokens) -> [B,T] bool; an all-False row for a
    completion without a closed box (or with an empty one). Padding is never marked."""
    out = torch.zeros(completion_ids.shape, dtype=torch.bool, device=completion_ids.device)
    for i in range(completion_ids.size(0)):
        cols = completion_mask[i].nonzero().flatten().tolist()
        ids = completion_ids[i, cols].tolist()
        text = tokenizer.decode(ids, skip_special_tokens=False)
        span = answer_char_span(text)
        if span is None or span[0] == span[1]:
            continue
        for col, (begin, end) in zip(cols, token_char_spans(ids, tokenizer)):
            if begin < span[1] and end > span[0] and end > begin:  # the token's characters overlap the answer
                out[i, col] = True
    return out
