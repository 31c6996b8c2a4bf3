"""The peer baselines' math on hand-built inputs: patch blackening, VPPO's token filter and trajectory scale, PAPO's
loss terms. (Real training steps of both methods: tests/training/test_training.py.)"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.methods.blind import BLIND_VIEWS, PatchBlackeningParams, blacken, mask_seed, patch_mask
from pgpo.methods.loss_terms import LOSS_TERMS, LossTermBatch
from pgpo.methods.shaping import SHAPERS, ShapingBatch, VPPOParams, top_fraction_mask, trajectory_scale


# -- patch blackening ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.5, 0.6])
def test_blackened_fraction_is_p(p):
    fractions = [patch_mask(224, 224, p, 14, mask_seed(0, f"q{i}", 3, 0)).mean() for i in range(200)]
    assert abs(np.mean(fractions) - p) < 0.01  # 200 x 256 patches: SE of the mean ~0.002
    assert np.std(fractions) > 0  # masks differ between prompts


def test_masks_are_reproducible_from_their_seed():
    a = patch_mask(112, 112, 0.5, 14, mask_seed(0, "geo-1", 7, 2))
    assert np.array_equal(a, patch_mask(112, 112, 0.5, 14, mask_seed(0, "geo-1", 7, 2)))
    for other in (mask_seed(1, "geo-1", 7, 2), mask_seed(0, "geo-2", 7, 2), mask_seed(0, "geo-1", 8, 2),
                  mask_seed(0, "geo-1", 7, 3)):
        assert not np.array_equal(a, patch_mask(112, 112, 0.5, 14, other))


def test_blacken_zeroes_exactly_the_masked_patches_including_partial_edge_patches():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(30, 20, 3), dtype=np.uint8)  # 3 x 2 patches of 14, the last ones partial
    mask = np.array([[True, False], [False, True], [True, True]])
    out = blacken(image, mask, 14)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert (out[:14, :14] == 0).all() and np.array_equal(out[:14, 14:], image[:14, 14:])
    assert np.array_equal(out[14:28, :14], image[14:28, :14]) and (out[14:28, 14:] == 0).all()
    assert (out[28:] == 0).all()
    assert (image > 0).all()  # the input is not modified in place


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 80), w=st.integers(1, 80), patch=st.integers(1, 20), p=st.floats(0, 1),
       seed=st.integers(0, 2**31))
def test_blackening_properties(h, w, patch, p, seed):
    image = np.full((h, w, 3), 200, dtype=np.uint8)
    mask = patch_mask(h, w, p, patch, seed)
    assert mask.shape == (math.ceil(h / patch), math.ceil(w / patch))
    out = blacken(image, mask, patch)
    expected = np.repeat(np.repeat(mask, patch, 0), patch, 1)[:h, :w]
    assert np.array_equal(out[..., 0] == 0, expected)  # black exactly where a masked patch covers the pixel
    assert np.array_equal(blacken(out, mask, patch), out)  # idempotent


def test_blackened_images_keep_their_visual_token_count(tiny):
    from PIL import Image

    _, processor = tiny
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)) for h, w in
              [(112, 112), (90, 150), (57, 33)]]
    before = processor.image_processor(images=images, return_tensors="pt")
    masked = [Image.fromarray(blacken(np.asarray(im), patch_mask(im.height, im.width, 0.6, 14, i), 14))
              for i, im in enumerate(images)]
    after = processor.image_processor(images=masked, return_tensors="pt")
    assert torch.equal(before["image_grid_thw"], after["image_grid_thw"])
    assert before["pixel_values"].shape == after["pixel_values"].shape
    assert not torch.equal(before["pixel_values"], after["pixel_values"])


def test_patch_blackening_parameters_are_validated():
    entry = BLIND_VIEWS.get("patch_blackening")
    assert entry.make_params({"p": 0.6, "per": "prompt"}) == PatchBlackeningParams(0.6, 14, "prompt")
    for bad in ({"p": 1.5}, {"patch": 0}, {"per": "token"}):
        with pytest.raises(ValueError):
            entry.make_params(bad)
    with pytest.raises(ValueError, match="known"):
        entry.make_params({"probability": 0.5})


# -- VPPO --------------------------------------------------------------------------------------------------------------
def test_top_fraction_selects_exactly_the_top_tokens_with_deterministic_ties():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.2, 7.0],   # 5 tokens (+1 padding): k = 2 -> tokens 3 and 1
                           [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # all tied, 6 tokens: k = 3 -> the first three
                           [0.0, 2.0, 2.0, 1.0, 0.0, 0.0]])  # 4 tokens: k = 2 -> the two tied 2.0s
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    keep = top_fraction_mask(scores, mask, 0.4)
    assert keep.tolist() == [[False, True, False, True, False, False], [True, True, True, False, False, False],
                             [False, True, True, False, False, False]]


@pytest.mark.parametrize("n,k", [(1, 1), (5, 2), (10, 4), (15, 6), (25, 10), (26, 11)])
def test_top_fraction_count_is_ceil_of_forty_percent(n, k):
    keep = top_fraction_mask(torch.rand(1, n), torch.ones(1, n), 0.4)
    assert keep.sum().item() == k  # 0.4 * 15 is 6.000000000000001 in floating point: still 6


def test_trajectory_scale_has_mean_one_and_the_paper_bounds():
    s = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 4.0], [0.5, 0.5]])  # response means 0, 1, 3, 0.5
    alpha = trajectory_scale(s, torch.ones_like(s), 0.9)
    n = torch.tensor([0.0, 1 / 3, 1.0, 1 / 6])
    b_max = 0.9 + 0.1 / n.mean()
    assert torch.allclose(alpha, 0.9 + n * (b_max - 0.9))
    assert alpha.mean().item() == pytest.approx(1.0) and alpha.min().item() == pytest.approx(0.9)
    assert torch.equal(trajectory_scale(torch.ones(3, 4), torch.ones(3, 4), 0.9), torch.ones(3))  # nothing to rank


def test_trajectory_scale_uses_the_statistics_of_all_processes():
    s = torch.tensor([[0.0], [1.0], [2.0], [5.0], [3.0], [4.0]])
    whole = trajectory_scale(s, torch.ones_like(s), 0.9)
    other = s[3:, 0].clone()  # what the second process holds
    local = trajectory_scale(s[:3], torch.ones(3, 1), 0.9, gather=lambda x: torch.cat([x, other]))
    assert torch.allclose(local, whole[:3])
    assert local.mean().item() != pytest.approx(1.0)  # only the batch over both processes has mean 1


@settings(max_examples=60, deadline=None)
@given(b=st.integers(2, 9), t=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_vppo_shaper_properties(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    dep = torch.rand(b, t, generator=g) * 3 * mask
    adv = torch.randn(b, generator=g)
    out = SHAPERS.get("vppo").fn(ShapingBatch(adv, mask, dep), VPPOParams())
    tok = out.token_advantages
    assert (tok[mask == 0] == 0).all()
    expected = torch.ceil(lengths.double() * 0.4 - 1e-9).long()
    assert torch.equal(top_fraction_mask(dep, mask, 0.4).sum(-1), expected)
    assert ((tok != 0).sum(-1) <= expected).all()
    alpha = trajectory_scale(dep, mask, 0.9)
    assert alpha.mean().item() == pytest.approx(1.0, abs=1e-5) and alpha.min().item() >= 0.9 - 1e-6
    # on kept tokens the advantage is alpha_i * A_i exactly
    keep = top_fraction_mask(dep, mask, 0.4)
    assert torch.allclose(tok[keep], (adv[:, None] * alpha[:, None]).expand_as(tok)[keep])


# -- PAPO --------------------------------------------------------------------------------------------------------------
def _papo_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(3, 5, generator=g) * 2).requires_grad_(True)
    blind = (-torch.rand(3, 5, generator=g) * 2).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    return logps, blind, mask


def test_perception_kl_gradient_flows_only_through_the_image_branch_and_increases_the_kl():
    from pgpo.methods.dependency import k3

    logps, blind, mask = _papo_batch()
    entry = LOSS_TERMS.get("perception_kl")
    term = entry.fn(LossTermBatch(logps, mask, blind, mask.sum()), entry.make_params({"gamma": 0.02}))
    term.loss.backward()
    assert blind.grad is None  # the masked-image branch is a constant
    assert logps.grad.abs().sum() > 0 and (logps.grad[mask == 0] == 0).all()
    kl_before = (k3(logps, blind, mask).sum() / mask.sum()).item()
    assert term.value == pytest.approx(kl_before, rel=1e-5)
    assert term.loss.item() == pytest.approx(-0.02 * kl_before, rel=1e-5)  # minimising the loss maximises the KL
    with torch.no_grad():
        stepped = logps - 1.0 * logps.grad  # one gradient-descent step on the term
    assert (k3(stepped, blind, mask).sum() / mask.sum()).item() > kl_before


def test_entropy_penalties():
    logps, blind, mask = _papo_batch(1)
    image = LOSS_TERMS.get("entropy_penalty")
    term = image.fn(LossTermBatch(logps, mask, None, torch.tensor(30.0)), image.make_params({"coef": 0.06}))
    assert term.loss.item() == pytest.approx(0.06 * (-(logps * mask).sum() / 30.0).item())
    term.loss.backward()
    assert torch.allclose(logps.grad, -0.06 * mask / 30.0)  # pushes up the sampled tokens: entropy goes down
    masked = LOSS_TERMS.get("blind_entropy_penalty")
    assert masked.needs_blind_view and not image.needs_blind_view
    term = masked.fn(LossTermBatch(logps, mask, blind, mask.sum()), masked.make_params({"coef": 0.03}))
    assert term.loss.item() == pytest.approx(0.03 * (-(blind * mask).sum() / mask.sum()).item())
    assert not term.loss.requires_grad  # computed once per generation step, without gradient (PAPO's default)


def test_loss_terms_split_over_micro_batches_sum_to_the_update_token_mean():
    logps, blind, mask = _papo_batch(2)
    entry = LOSS_TERMS.get("perception_kl")
    params = entry.make_params({"gamma": 0.01})
    whole = entry.fn(LossTermBatch(logps, mask, blind, mask.sum()), params).loss
    parts = sum(entry.fn(LossTermBatch(logps[i:i + 1], mask[i:i + 1], blind[i:i + 1], mask.sum()), params).loss
                for i in range(3))
    assert torch.allclose(whole, parts)


def test_perception_kl_is_bounded_as_in_papo_and_extreme_tokens_get_no_gradient():
    """PAPO clamps log r to +-20 and the per-token KL to 10 with no gradient beyond. With 1% extreme tokens
    (the masked-image probability collapsed) the unbounded k3 gradient is dominated by them; the clamped one is
    not, and on ordinary tokens the two agree exactly."""
    from pgpo.methods.dependency import k3

    g = torch.Generator().manual_seed(0)
    logps = (-torch.rand(4, 100, generator=g)).requires_grad_(True)
    blind = logps.detach() - 0.3 * torch.rand(4, 100, generator=g)
    extreme = torch.zeros(4, 100, dtype=torch.bool)
    extreme[0, :4] = True  # 1% of the tokens: log r = +8, KL = e^8 - 9 ~ 2972 (above the KL clamp) ...
    blind[extreme] = logps.detach()[extreme] + 8.0
    blind[1, 0] = logps.detach()[1, 0] - 25.0  # ... and one with log r = -25 (below the log-ratio clamp)
    extreme[1, 0] = True
    mask = torch.ones(4, 100)
    entry = LOSS_TERMS.get("perception_kl")
    params = entry.make_params({"gamma": 0.01})
    assert (params.log_ratio_clip, params.kl_clip) == (20.0, 10.0)
    term = entry.fn(LossTermBatch(logps, mask, blind, mask.sum()), params)
    term.loss.backward()
    ours = logps.grad.clone()
    logps.grad = None
    (-0.01 * k3(logps, blind, mask).sum() / mask.sum()).backward()
    unbounded = logps.grad
    assert (ours[extreme] == 0).all() and (unbounded[extreme] != 0).all()
    assert torch.allclose(ours[~extreme], unbounded[~extreme], rtol=1e-5, atol=0)
    assert unbounded.abs().sum() > 20 * ours.abs().sum()  # the extremes dominate the unbounded gradient
    assert term.value <= 10.0
    with pytest.raises(ValueError, match="kl_clip"):
        entry.make_params({"kl_clip": 0.0})
