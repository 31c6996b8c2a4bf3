"""What the trainer adds around a token shaper, the same for every method (nothing here knows one): the
per-response seeds a shaper may draw from, and the statistics of where the credit went.

- ``response_seeds``: one seed per response of a generation batch, from (run seed, optimizer step, process, row).
  The trainer attaches them to the rollout batch, so they travel with their responses when TRL shuffles and
  splits the batch into micro-batches: a response draws the same numbers whether it is shaped with its whole batch
  or inside one micro-batch, in a rerun or after a resume.
- ``answer_share``: the share of the token-advantage mass sum |A~| on answer tokens (pgpo.methods.answer_span).
- ``entropy_split``: the mean per-token entropy on answer tokens and on the other completion tokens.
- ``reward_means``: each reward function's mean over every rollout sampled (before any filter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def response_seeds(run_seed: int, step: int, process: int, rows: int, device=None) -> torch.Tensor:
    """[rows] int64 seeds in [0, 2^62), one per row of this process's generation batch, a pure function of
    (run seed, optimizer step, process index, row index): no global random state is read or advanced."""
    seeds = []
    for row in range(rows):
        digest = hashlib.blake2b(f"{run_seed}/{step}/{process}/{row}".encode(), digest_size=8).digest()
        seeds.append(int.from_bytes(digest, "little") >> 2)
    return torch.tensor(seeds, dtype=torch.int64, device=device)


def answer_share(token_advantages: torch.Tensor, answer_mask: torch.Tensor, mask: torch.Tensor) -> float | None:
    """sum |A~| over answer tokens / sum |A~| over all response tokens. [B,T] x3 -> float in [0, 1].

    0.0 when the batch has no answer token; None when it carries no advantage mass at all (every advantage 0: the
    share is undefined and is not logged)."""
    valid = mask.bool()
    mass = token_advantages.detach().abs().float() * valid
    total = mass.sum()
    if not (answer_mask.bool() & valid).any():
        return 0.0
    if total <= 0:
        return None
    return (mass * answer_mask.bool()).sum().item() / total.item()


def entropy_split(entropies: torch.Tensor, answer_mask: torch.Tensor,
                  mask: torch.Tensor) -> tuple[float | None, float | None]:
    """(mean entropy over answer tokens, mean over the other response tokens). [B,T] x3; None for a side with no
    token (a mean over nothing is not 0 nats)."""
    valid = mask.bool()
    answer = answer_mask.bool() & valid
    rest = valid & ~answer
    values = entropies.detach().float()

    def mean(where: torch.Tensor) -> float | None:
        return values[where].mean().item() if where.any() else None

    return mean(answer), mean(rest)


def reward_name(function_name: str) -> str:
    """The statistic's name of a reward function: its name without a trailing ``_reward``
    (accuracy_reward -> accuracy)."""
    return function_name.removesuffix("_reward")


def reward_means(rewards: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    """Each reward function's mean over the rows of `rewards` [N, functions], NaN (unscorable) rows left out;
    keyed by reward_name. A function with no scorable row is left out."""
    if rewards.size(-1) != len(names):
        raise ValueError(f"rewards have {rewards.size(-1)} columns for {len(names)} reward functions {list(names)}")
    out = {}
    for column, name in enumerate(names):
        values = rewards[:, column].float()
        values = values[~torch.isnan(values)]
        if values.numel():
            out[reward_name(name)] = values.mean().item()
    return out
