"""DAPO dynamic sampling bookkeeping: which groups are kept (on the rewards' spread, whatever the group size),
and merging rounds with different paddings."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.training.dynamic_sampling import (REWARD_SPREAD_TOL, choose_groups, groups_with_signal, merge_rows,
                                            sample_until_full, zero_signal_advantages)

PAD = 0


def test_groups_with_signal_on_the_rewards():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.1 + 1e-7, 0.0, 1.0, 0.9, float("nan")])
    assert groups_with_signal(rewards, 2).tolist() == [False, False, True, False]  # NaN: neutralised group
    assert groups_with_signal(rewards, 4).tolist() == [False, False]
    assert groups_with_signal(rewards[:6], 3).tolist() == [False, True]


def _trl_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """TRL 1.16's group-relative advantages (sum_then_normalize, scale_rewards group), as it computes them."""
    from trl.trainer.utils import nanstd

    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    return (rewards - mean) / (std + 1e-4)


def test_the_old_advantage_test_depended_on_the_group_size():
    """The float32 group mean leaves 7e-5 (all 0.1) and 6e-4 (all 0.9) at G = 8 and nothing at G = 5: the old
    keep test, max|advantage| > 1e-6, kept those zero-signal groups at 8 and dropped them at 5."""
    weights = torch.tensor([0.9, 0.1])
    for per_func, noise in (([0.0, 1.0], 7.45e-5), ([1.0, 0.0], 5.96e-4)):  # 0.9 x accuracy + 0.1 x format
        for g, expected in ((8, noise), (5, 0.0)):
            rewards = (torch.tensor([per_func] * g) * weights).nansum(dim=1)
            old = _trl_advantages(rewards, g).abs().amax().item()
            assert old == __import__("pytest").approx(expected, rel=1e-2, abs=0), (per_func, g, old)
            assert groups_with_signal(rewards, g).tolist() == [False]  # the rule now: no spread, no signal
            adv = zero_signal_advantages(_trl_advantages(rewards, g), groups_with_signal(rewards, g), g)
            assert (adv == 0).all()


_REWARD = st.sampled_from([0.0, 0.1, 0.9, 1.0]) | st.floats(0.0, 1.0, width=32)


@st.composite
def _groups(draw):
    """Groups of one size G in [2, 16]: each either constant (any reward) or with two rewards > tol apart."""
    g = draw(st.integers(2, 16))
    groups, differ = [], []
    for _ in range(draw(st.integers(1, 6))):
        values = [draw(_REWARD)] * g
        if draw(st.booleans()):
            other = draw(_REWARD.filter(lambda v, base=values[0]: abs(v - base) > 1e-5))
            values[draw(st.integers(0, g - 1))] = other
        groups.append(values)
        differ.append(len(set(values)) > 1)
    return g, groups, differ


@settings(max_examples=300, deadline=None)
@given(_groups())
def test_a_group_is_kept_iff_its_rewards_differ_whatever_its_size(case):
    g, groups, differ = case
    rewards = torch.tensor([v for values in groups for v in values], dtype=torch.float32)
    keep = groups_with_signal(rewards, g)
    assert keep.tolist() == differ
    spread = rewards.double().view(-1, g).amax(1) - rewards.double().view(-1, g).amin(1)
    assert keep.tolist() == (spread > REWARD_SPREAD_TOL).tolist()
    # TRL's advantages of the same rewards; zero-signal groups get exactly 0, the others are untouched
    trl = _trl_advantages(rewards, g)
    adv = zero_signal_advantages(trl, keep, g)
    rows = keep.repeat_interleave(g)
    assert (adv[~rows] == 0).all() and torch.equal(adv[rows], trl[rows])
    assert (adv.view(-1, g)[keep].abs().amax(1) > 1e-2).all()  # a kept group carries a real signal


def test_choose_groups_prefers_kept_then_fills_in_order():
    keeps = [torch.tensor([False, True, False]), torch.tensor([True, True, False])]
    assert choose_groups(keeps, 2) == ([(0, 1), (1, 0)], 0)
    assert choose_groups(keeps, 3) == ([(0, 1), (1, 0), (1, 1)], 0)
    assert choose_groups(keeps, 5) == ([(0, 1), (1, 0), (1, 1), (0, 0), (0, 2)], 2)


def _rollout(prompts, completions, start_pixel):
    """A TRL-style rollout dict: left-padded prompts, right-padded completions, 4 pixel rows per image."""
    def pad(rows, side):
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), PAD)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            out[i, sl], mask[i, sl] = torch.tensor(r), 1
        return out, mask

    p, pm = pad(prompts, "left")
    c, cm = pad(completions, "right")
    b = len(prompts)
    mm = torch.zeros_like(torch.cat([p, c], 1))
    mm[:, p.size(1) - 1] = 1  # the last prompt token stands for the image
    return {"prompt_ids": p, "prompt_mask": pm, "completion_ids": c, "completion_mask": cm,
            "advantages": torch.arange(b, dtype=torch.float) + start_pixel, "num_items_in_batch": cm.sum(),
            "mm_token_type_ids": mm, "num_images": [1] * b, "image_grid_thw": torch.tensor([[1, 2, 2]] * b),
            "pixel_values": torch.arange(start_pixel, start_pixel + 4 * b, dtype=torch.float)[:, None].repeat(1, 3)}


def test_merge_rows_repads_and_keeps_every_row_intact():
    a = _rollout([[5, 6], [7, 8, 9]], [[1], [2, 3, 4]], start_pixel=0)
    b = _rollout([[10, 11, 12, 13], [14]], [[15, 16], [17]], start_pixel=100)
    out = merge_rows([a, b], [(1, 0), (0, 1), (1, 1)], PAD)
    assert out["prompt_ids"].tolist() == [[10, 11, 12, 13], [0, 7, 8, 9], [0, 0, 0, 14]]
    assert out["prompt_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]]
    assert out["completion_ids"].tolist() == [[15, 16, 0], [2, 3, 4], [17, 0, 0]]
    assert out["completion_mask"].sum(-1).tolist() == [2, 3, 1]
    assert out["advantages"].tolist() == [100.0, 1.0, 101.0]
    assert out["pixel_values"][:, 0].tolist() == [100, 101, 102, 103, 4, 5, 6, 7, 104, 105, 106, 107]
    assert out["image_grid_thw"].shape == (3, 3) and out["num_images"] == [1, 1, 1]
    # the image marker stays on the last prompt token of every row, completion part all zeros
    assert out["mm_token_type_ids"].shape == (3, 7)
    assert out["mm_token_type_ids"][:, 3].tolist() == [1, 1, 1] and out["mm_token_type_ids"].sum() == 3


def test_merge_rows_refuses_unknown_keys():
    a = _rollout([[5]], [[1]], 0)
    a["tool_mask"] = torch.ones(1, 1)
    try:
        merge_rows([a], [(0, 0)], PAD)
    except NotImplementedError as e:
        assert "tool_mask" in str(e)
    else:
        raise AssertionError("an unknown rollout key must not be dropped silently")


def test_the_gpu_smoke_rounding_check_passes_on_cpu():
    from pgpo.diagnostics.known_bugs import rounding_check

    line = rounding_check("cpu")
    assert "0.1x8: 7.4e-05" in line and "0.9x8: 6.0e-04" in line and "0.9x5: 0.0e+00" in line


def _scripted(keeps_by_round, others_short_by_round):
    """sample_until_full's callables from a script: per round the has-signal flags of this process's groups (one
    row a group) and whether another process is still short; records every call."""
    calls = {"rollout": [], "draw": [], "all_full": []}

    def scored_rollout(rows):
        calls["rollout"].append([r["id"] for r in rows])
        keep = torch.tensor(keeps_by_round[len(calls["rollout"]) - 1])
        start = 100 * len(calls["rollout"])
        return _rollout([[1]] * len(rows), [[2]] * len(rows), start_pixel=start), keep

    def draw_prompts(round_):
        calls["draw"].append(round_)
        return [{"id": f"r{round_}-{i}"} for i in range(len(keeps_by_round[round_]))]

    def all_full(short):
        calls["all_full"].append(short)
        return not short and not others_short_by_round[len(calls["all_full"]) - 1]

    return calls, scored_rollout, draw_prompts, all_full


def test_sample_until_full_runs_rounds_until_every_process_is_full():
    first = [{"id": "a"}, {"id": "b"}]
    # this process: 1 group with signal in round 1, another in round 2 (full); another process is short until 3
    calls, *fns = _scripted([[True, False], [False, True], [False, False]], [False, True, False])
    r = sample_until_full(first, 2, 1, 8, *fns, pad_token_id=PAD)
    assert (r.rounds, r.needed, r.kept, r.drawn, r.filled) == (3, 2, 2, 6, 0)
    assert calls["rollout"] == [["a", "b"], ["r1-0", "r1-1"], ["r2-0", "r2-1"]] and calls["draw"] == [1, 2]
    assert calls["all_full"] == [True, False, False]  # this process was short after round 1 only
    assert r.batch["advantages"].tolist() == [100.0, 201.0]  # round 1's group 0, round 2's group 1
    assert [row["id"] for row in r.batch["rows"]] == ["a", "r1-1"]


def test_sample_until_full_stops_at_max_rounds_without_a_last_collective():
    calls, *fns = _scripted([[False, False], [True, False]], [True, True])
    r = sample_until_full([{"id": "a"}, {"id": "b"}], 2, 1, 2, *fns, pad_token_id=PAD)
    assert (r.rounds, r.needed, r.kept, r.drawn, r.filled) == (2, 2, 1, 4, 1)
    assert calls["all_full"] == [True]  # after round 2 the cap decides: no gather another process could miss
    assert r.batch["advantages"].tolist() == [200.0, 100.0]  # the group with signal first, then a filler
