"""Which completion tokens are the final answer: the tokens that carry the characters inside the last
\\boxed{...} (the span pgpo.scoring.last_boxed grades). Shared by the oracle shaper, the answer-share statistics and
the credit-assignment testbed's gates, so "the answer token" means one thing everywhere.

Character spans are mapped to tokens through per-token decoding (cumulative lengths); a tokenizer whose per-token
pieces do not concatenate to the full decode (byte-level pieces of a multi-byte character) falls back to decoding
every prefix, which is exact but quadratic (completions are short).
"""

from __future__ import annotations

import re

import torch

from pgpo.prompts import matched_braces

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def answer_char_span(text: str) -> tuple[int, int] | None:
    """[start, end) of the content of the last closed \\boxed{...} in `text`, None if there is none. The same box
    pgpo.scoring.last_boxed reads (its content is text[start:end])."""
    starts = [m.end() for m in _BOX.finditer(text or "")]
    if not starts:
        return None
    close = matched_braces(text)
    for start in reversed(starts):
        end = close.get(start - 1)
        if end is not None:
            return start, end
    return None


def token_char_ends(ids: list[int], tokenizer) -> list[int]:
    """End offset, in the decoded text of `ids`, of every token (decoded with special tokens kept)."""
    pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in ids]
    full = tokenizer.decode(ids, skip_special_tokens=False)
    if "".join(pieces) == full:
        ends, total = [], 0
        for p in pieces:
            total += len(p)
            ends.append(total)
        return ends
    return [len(tokenizer.decode(ids[:i + 1], skip_special_tokens=False)) for i in range(len(ids))]


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
        begin = 0
        for col, end in zip(cols, token_char_ends(ids, tokenizer)):
            if begin < span[1] and end > span[0] and end > begin:  # the token's characters overlap the answer
                out[i, col] = True
            begin = end
    return out
