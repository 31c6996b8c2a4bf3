"""DAPO dynamic sampling bookkeeping: which groups are kept, and merging rounds with different paddings."""

import torch

from pgpo.dynamic_sampling import choose_groups, groups_with_signal, merge_rows

PAD = 0


def test_groups_with_signal():
    adv = torch.tensor([0.0, 0.0, 1e-9, 0.0, 0.7, -0.7, 0.0, 0.0])
    assert groups_with_signal(adv, 2).tolist() == [False, False, True, False]
    assert groups_with_signal(adv, 4).tolist() == [False, True]


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
