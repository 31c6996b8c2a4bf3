"""PGPO token weights: gate values, degenerate cases and property tests of the invariants."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.config.schema import ConfigError, load_method
from pgpo.methods.shaping import SHAPERS, PGPOParams, ShapingBatch, gate, pgpo_token_weights


@pytest.mark.parametrize("i, expected", [(0.0, 0.0), (0.2, 0.5), (0.39, 0.975), (0.4, 1.0), (0.7, 2.0), (1.0, 3.0)])
def test_gate_known_points(i, expected):
    assert gate(torch.tensor(i), tau=0.4, beta=2.0, eps=0.0).item() == pytest.approx(expected, abs=1e-6)
    assert gate(torch.tensor(i), tau=0.4, beta=2.0).item() == pytest.approx(expected, abs=1e-4)  # default eps


def test_known_response_weights():
    s = torch.tensor([[0.0, math.e - 1, math.e ** 2 - 1, 0.0]])  # log1p -> 0, 1, 2
    m = torch.tensor([[1, 1, 1, 0]])
    w = pgpo_token_weights(s, m, normalize=False, eps=0.0)
    assert w.tolist()[0][:3] == pytest.approx([0.0, 1.0 + 2.0 * 0.1 / 0.6, 3.0])
    assert w[0, 3] == 0.0
    wn = pgpo_token_weights(s, m, eps=0.0)
    assert wn[0, :3].sum().item() == pytest.approx(3.0)
    assert (wn[0, :3] / w[0, :3].clamp_min(1e-9))[1:].tolist() == pytest.approx([3 / w[0, :3].sum().item()] * 2)


@pytest.mark.parametrize("scores", [[5.0, 5.0, 5.0], [0.0, 0.0, 0.0], [7.0]])
def test_degenerate_responses_get_unit_weights(scores):
    s = torch.tensor([scores + [0.0]])
    m = torch.tensor([[1] * len(scores) + [0]])
    for normalize in (True, False):
        w = pgpo_token_weights(s, m, normalize=normalize)
        assert w[0, : len(scores)].tolist() == [1.0] * len(scores)
        assert w[0, -1] == 0.0


def test_empty_response_is_all_zero_and_finite():
    w = pgpo_token_weights(torch.zeros(1, 4), torch.zeros(1, 4))
    assert torch.isfinite(w).all() and (w == 0).all()


responses = st.lists(st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=12), min_size=1, max_size=5)
taus = st.floats(0.0, 1.0)
betas = st.floats(0.0, 4.0)


def _batch(rows, pad_right=0):
    width = max(len(r) for r in rows) + pad_right
    s = torch.zeros(len(rows), width)
    m = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        s[i, : len(r)] = torch.tensor(r)
        m[i, : len(r)] = 1
    s = s + (1 - m) * 123.0  # garbage on padding must not matter
    return s, m


@settings(max_examples=150, deadline=None)
@given(responses, taus, betas)
def test_weights_nonnegative_finite_and_mass_conserving(rows, tau, beta):
    s, m = _batch(rows)
    w = pgpo_token_weights(s, m, tau=tau, beta=beta)
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert (w[m == 0] == 0).all()
    assert torch.allclose(w.sum(-1), m.sum(-1).float(), rtol=1e-4, atol=1e-4)


@settings(max_examples=100, deadline=None)
@given(responses, taus, betas, st.integers(0, 6))
def test_padding_amount_and_other_responses_do_not_matter(rows, tau, beta, extra_pad):
    s, m = _batch(rows)
    s2, m2 = _batch(rows, pad_right=extra_pad)
    w, w2 = pgpo_token_weights(s, m, tau=tau, beta=beta), pgpo_token_weights(s2, m2, tau=tau, beta=beta)
    assert torch.allclose(w, w2[:, : w.size(1)], atol=1e-6)
    for i, r in enumerate(rows):  # each response alone gives the same weights as inside the batch
        alone = pgpo_token_weights(*_batch([r]), tau=tau, beta=beta)
        assert torch.allclose(alone[0, : len(r)], w[i, : len(r)], atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 50, allow_nan=False), min_size=2, max_size=16), taus, st.floats(0.01, 4.0))
def test_monotone_and_rank_preserving(row, tau, beta):
    s, m = _batch([row])
    w = pgpo_token_weights(s, m, tau=tau, beta=beta)[0, : len(row)]
    order = sorted(range(len(row)), key=lambda i: row[i])
    ws = [w[i].item() for i in order]
    assert all(a <= b + 1e-5 for a, b in zip(ws, ws[1:]))


def test_identity_and_unit_weight_pgpo_give_the_sequence_advantage():
    adv = torch.tensor([1.5, -0.5])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    ident = SHAPERS.get("identity")
    out = ident.fn(ShapingBatch(adv, mask), None).token_advantages
    assert out.tolist() == [[1.5, 1.5, 0.0], [-0.5, 0.0, 0.0]]
    pg = SHAPERS.get("pgpo")
    flat = pg.fn(ShapingBatch(adv, mask, torch.full((2, 3), 0.3)), PGPOParams()).token_advantages
    assert torch.equal(flat, out)


@pytest.mark.parametrize("bad", [{"tau": 1.5}, {"tau": -0.1}, {"beta": -1.0}, {"eps": 0.0}])
def test_invalid_tau_beta_are_rejected_with_the_field(bad):
    with pytest.raises(ConfigError, match=list(bad)[0]):
        load_method("pgpo", {"shaper": {"params": bad}})


def test_unknown_shaper_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"known: \['identity', 'oracle', 'pgpo', 'placebo', 'vppo'\]"):
        load_method("pgpo", {"shaper": {"name": "nope"}})


def test_yaml_style_scientific_notation_is_accepted():
    m = load_method("pgpo", {"shaper": {"params": {"eps": "1e-6", "tau": "0.2"}}})
    params = SHAPERS.get("pgpo").make_params(m.shaper.params)
    assert params.eps == 1e-6 and params.tau == 0.2
