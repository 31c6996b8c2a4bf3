"""DAPO dynamic sampling on TRL rollout batches: keep only groups whose rewards differ, merge several rollout rounds
into one batch. Pure tensor bookkeeping over the dict TRL's ``_generate_and_score_completions`` returns.

A group has a learning signal iff its rewards differ: max - min > REWARD_SPREAD_TOL, on the rewards themselves,
never on the advantages. TRL's group mean is a float32 sum divided by G, so a group whose rewards are all 0.1 or
all 0.9 gets advantages of 7e-5 to 6e-4 after the division by (std + 1e-4) at G = 8 (and exactly 0 at G = 5): a
test on |advantage| keeps such zero-signal groups or not depending on the group size. Zero-signal groups also get
advantage exactly 0 (zero_signal_advantages), not that rounding noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pgpo.training.trl_bridge import pad, split_pixel_values_by_grid, unsplit_pixel_values_by_grid

# Keys of TRL's rollout dict and how each is merged. Anything else fails loudly (a TRL upgrade must be looked at).
_LEFT_PADDED = ("prompt_ids", "prompt_mask")
_RIGHT_PADDED = ("completion_ids", "completion_mask", "old_per_token_logps", "sampling_per_token_logps",
                 "ref_per_token_logps", "importance_sampling_ratio")
_PER_ROW = ("advantages", "rollout_rewards")
_PER_SAMPLE_LISTS = ("pixel_values", "image_grid_thw", "num_images", "rows")  # rows: dataset rows
_RECOMPUTED = ("num_items_in_batch",)


REWARD_SPREAD_TOL = 1e-6
"""Rewards of one group closer than this are equal (pgpo's rewards are multiples of 0.1 in [0, 1]; float32
resolves them to 6e-8)."""


def groups_with_signal(rewards: torch.Tensor, group_size: int, tol: float = REWARD_SPREAD_TOL) -> torch.Tensor:
    """True for each group whose rewards differ: max - min > tol. A group with a NaN reward has none (pgpo
    neutralises it: pgpo.training.trainer.check_rewards). rewards [B] (groups of group_size contiguous rows) -> [B/G]."""
    grouped = rewards.view(-1, group_size)
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)
    return (spread > tol) & ~torch.isnan(grouped).any(dim=1)


def zero_signal_advantages(advantages: torch.Tensor, keep: torch.Tensor, group_size: int) -> torch.Tensor:
    """advantages [B] with every row of a group without signal (keep [B/G] False) set to exactly 0."""
    rows = keep.to(advantages.device).repeat_interleave(group_size)
    return torch.where(rows, advantages, torch.zeros_like(advantages))


def choose_groups(keeps: list[torch.Tensor], n_groups: int) -> tuple[list[tuple[int, int]], int]:
    """(round, group) picks: kept groups in rollout order; if fewer than n_groups, fill with dropped groups of the
    earliest rounds (their advantage is 0, so they add no gradient). Returns the picks and how many were filled."""
    kept = [(r, int(g)) for r, k in enumerate(keeps) for g in torch.nonzero(k).flatten()]
    picks = kept[:n_groups]
    filled = n_groups - len(picks)
    if filled:
        dropped = [(r, int(g)) for r, k in enumerate(keeps) for g in torch.nonzero(~k).flatten()]
        picks += dropped[:filled]
    return picks, filled


@dataclass
class Rounds:
    """One rollout batch filled by dynamic sampling, and how (this process's counts)."""

    batch: dict
    """The merged rollout dict: n_groups groups, signal first (pgpo.training.dynamic_sampling.choose_groups)."""
    rounds: int
    """Rollout rounds run (the same on every process)."""
    needed: int
    """The round at which this process alone had enough groups with signal (= rounds if it never had)."""
    kept: int
    """Groups whose rewards differ, over all rounds."""
    drawn: int
    """Groups drawn, over all rounds."""
    filled: int
    """Zero-signal groups that fill the batch (the round cap was reached short of n_groups)."""


def sample_until_full(first_rows: list[dict], n_groups: int, group_size: int, max_rounds: int,
                      scored_rollout: Callable[[list[dict]], tuple[dict, torch.Tensor]],
                      draw_prompts: Callable[[int], list[dict]], all_full: Callable[[bool], bool],
                      pad_token_id: int) -> Rounds:
    """DAPO dynamic sampling: rollout rounds until n_groups groups whose rewards differ, or max_rounds.

    scored_rollout(rows) -> (rollout dict, [n] has-signal flags per group); draw_prompts(round) -> the rows of a
    refill round (fresh prompts, each G times); all_full(this process is short) -> True when no process is short.
    Every process runs the same number of rounds (TRL gathers rewards inside each round), so all_full is a
    collective the caller implements; it is not called once max_rounds is reached."""
    batches, keeps, needed = [], [], 0
    while True:
        rows = first_rows if not batches else draw_prompts(len(batches))
        batch, keep = scored_rollout(rows)
        batch["rows"] = list(rows)
        batches.append(batch)
        keeps.append(keep)
        kept = sum(int(k.sum()) for k in keeps)
        needed = needed or (len(batches) if kept >= n_groups else 0)
        if len(batches) >= max_rounds or all_full(kept < n_groups):
            break
    picks, filled = choose_groups(keeps, n_groups)
    rows = [(b, grp * group_size + j) for b, grp in picks for j in range(group_size)]
    return Rounds(merge_rows(batches, rows, pad_token_id), len(batches), needed or len(batches), kept,
                  n_groups * len(batches), filled)


def merge_rows(batches: list[dict], rows: list[tuple[int, int]], pad_token_id: int) -> dict:
    """Build one rollout dict from rows (batch index, row index) of several, re-padding to common widths."""
    split = [split_pixel_values_by_grid(b) for b in batches]
    unknown = set().union(*(b.keys() for b in batches)) - set(
        _LEFT_PADDED + _RIGHT_PADDED + _PER_ROW + _PER_SAMPLE_LISTS + _RECOMPUTED + ("mm_token_type_ids",))
    if unknown:
        raise NotImplementedError(f"dynamic sampling cannot merge rollout keys {sorted(unknown)}")
    out: dict = {}
    prompt_len = {i: b["prompt_ids"].size(1) for i, b in enumerate(batches)}
    for key in _LEFT_PADDED:
        value = pad_token_id if key == "prompt_ids" else 0
        out[key] = _pad_rows([_strip_left(split[b][key][r], split[b]["prompt_mask"][r]) for b, r in rows],
                             value, "left")
    for key in _RIGHT_PADDED:
        if key in batches[0]:
            value = pad_token_id if key == "completion_ids" else 0
            out[key] = _pad_rows([split[b][key][r] for b, r in rows], value, "right")
    for key in _PER_ROW:
        if key in batches[0]:
            out[key] = torch.stack([split[b][key][r] for b, r in rows])
    if "mm_token_type_ids" in batches[0]:
        prompt_part = [_strip_left(split[b]["mm_token_type_ids"][r, :prompt_len[b]], split[b]["prompt_mask"][r])
                       for b, r in rows]
        left = _pad_rows(prompt_part, 0, "left")
        out["mm_token_type_ids"] = torch.cat([left, torch.zeros_like(out["completion_ids"])], dim=1)
    for key in _PER_SAMPLE_LISTS:
        if key in batches[0]:
            out[key] = [split[b][key][r] for b, r in rows]
    return unsplit_pixel_values_by_grid(out)


def _strip_left(row: torch.Tensor, mask_row: torch.Tensor) -> torch.Tensor:
    return row[int((mask_row == 0).sum()):] if mask_row[0] == 0 else row


def _pad_rows(rows: list[torch.Tensor], value, side: str) -> torch.Tensor:
    return pad(list(rows), padding_value=value, padding_side=side)
