"""The testbed's control shapers (issue 21): `oracle` (all weight on the answer tokens) and `placebo` (PGPO's weights
shuffled within each response), on constructed batches: known values and hypothesis invariants."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.methods.components import resolve_components
from pgpo.config.schema import REPO, load_method
from pgpo.methods.shaping import SHAPERS, PGPOParams, ShapingBatch, oracle_token_weights, pgpo_token_weights
from pgpo.methods.token_credit import response_seeds

ORACLE = SHAPERS.get("oracle")
PLACEBO = SHAPERS.get("placebo")
PGPO = SHAPERS.get("pgpo")


def test_oracle_known_weights():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    answer = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    w = oracle_token_weights(answer, mask)
    assert w.tolist() == [[0, 0, 4, 0, 0], [0, 0, 2.5, 2.5, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    result = ORACLE.fn(ShapingBatch(torch.tensor([1.0, -2.0, 0.5, 0.0]), mask, answer_mask=answer), None)
    assert result.token_advantages.tolist() == [[0, 0, 4, 0, 0], [0, 0, -5, -5, 0], [0.5, 0.5, 0.5, 0, 0],
                                                [0, 0, 0, 0, 0]]
    # the response without answer tokens is counted (the empty row is no response)
    assert result.stats == {"no_answer_responses": 1.0, "no_answer_fraction": pytest.approx(1 / 3)}


def test_an_answer_mark_on_padding_is_ignored():
    mask = torch.tensor([[1, 1, 0]])
    w = oracle_token_weights(torch.tensor([[False, False, True]]), mask)
    assert w.tolist() == [[1, 1, 0]]  # the only marked token is padding: no answer, plain advantage


def test_oracle_refuses_a_batch_without_answer_mask():
    with pytest.raises(ValueError, match="answer mask"):
        ORACLE.fn(ShapingBatch(torch.ones(1), torch.ones(1, 3)), None)


def test_a_shaper_that_draws_needs_seeds():
    batch = ShapingBatch(torch.ones(1), torch.ones(1, 3), torch.rand(1, 3))
    with pytest.raises(ValueError, match="seeds"):
        PLACEBO.fn(batch, PGPOParams())


# -- hypothesis: random responses, answer spans and dependency scores --------------------------------------------
@st.composite
def batches(draw, max_rows=5, max_len=12):
    """(advantages [B], mask [B,T], answer [B,T], dependency [B,T]) with right padding and garbage on padding."""
    lengths = draw(st.lists(st.integers(0, max_len), min_size=1, max_size=max_rows))
    width = max(max(lengths), 1) + draw(st.integers(0, 3))
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    answer = torch.zeros(len(lengths), width, dtype=torch.bool)
    dependency = torch.full((len(lengths), width), 77.0)  # garbage on padding must not matter
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        if n:
            start = draw(st.integers(0, n - 1))
            stop = draw(st.integers(start, n))  # stop == start: no answer token
            answer[i, start:stop] = True
            dependency[i, :n] = torch.tensor(draw(st.lists(st.floats(0, 20, allow_nan=False), min_size=n,
                                                           max_size=n)))
    advantages = torch.tensor(draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=len(lengths),
                                            max_size=len(lengths))))
    return advantages, mask, answer, dependency


def _seeds(rows: int, step: int = 0) -> torch.Tensor:
    return response_seeds(0, step, 0, rows)


@settings(max_examples=150, deadline=None)
@given(batches())
def test_oracle_conserves_mass_keeps_sign_and_zero_padding(b):
    adv, mask, answer, _ = b
    out = ORACLE.fn(ShapingBatch(adv, mask, answer_mask=answer), None).token_advantages
    n = mask.sum(-1).float()
    assert torch.allclose(out.sum(-1), adv * n, atol=1e-4)
    assert (out[mask == 0] == 0).all()
    assert ((out * adv[:, None]) >= 0).all()  # never the opposite sign
    has_answer = (answer & mask.bool()).any(-1)
    off_answer = mask.bool() & ~answer & has_answer[:, None]
    assert (out[off_answer] == 0).all()  # nothing off the answer where there is one


@settings(max_examples=150, deadline=None)
@given(batches(), st.floats(0.0, 1.0), st.floats(0.0, 4.0))
def test_placebo_is_pgpo_weights_permuted_within_each_response(b, tau, beta):
    adv, mask, _, dependency = b
    params = PGPOParams(tau=tau, beta=beta)
    seeds = _seeds(adv.numel())
    shuffled = PLACEBO.fn(ShapingBatch(torch.ones_like(adv), mask, dependency, seeds=seeds), params).token_advantages
    weights = pgpo_token_weights(dependency, mask, tau=tau, beta=beta)
    for i in range(adv.numel()):
        valid = mask[i].bool()
        # the same multiset of weights per response: same sparsity, same mass
        assert torch.equal(torch.sort(shuffled[i, valid]).values, torch.sort(weights[i, valid]).values)
    assert (shuffled[mask == 0] == 0).all()
    out = PLACEBO.fn(ShapingBatch(adv, mask, dependency, seeds=seeds), params).token_advantages
    assert torch.allclose(out, adv[:, None] * shuffled, atol=1e-6)  # A~ = A * shuffled w: sign kept, padding 0
    assert torch.allclose(out.sum(-1), adv * mask.sum(-1), atol=1e-3)
    again = PLACEBO.fn(ShapingBatch(adv, mask, dependency, seeds=seeds.clone()), params).token_advantages
    assert torch.equal(out, again)  # the same seeds draw the same permutation


@settings(max_examples=100, deadline=None)
@given(batches(max_rows=6), st.integers(1, 5))
def test_placebo_is_the_same_shaped_whole_or_in_micro_batches(b, cut):
    """Per-response seeds: a response gets the same permutation in any micro-batch, in any order."""
    adv, mask, _, dependency = b
    seeds = _seeds(adv.numel(), step=3)
    whole = PLACEBO.fn(ShapingBatch(adv, mask, dependency, seeds=seeds), PGPOParams()).token_advantages
    order = torch.randperm(adv.numel(), generator=torch.Generator().manual_seed(cut))  # TRL shuffles, then splits
    parts = []
    for chunk in order.split(cut):
        parts.append(PLACEBO.fn(ShapingBatch(adv[chunk], mask[chunk], dependency[chunk], seeds=seeds[chunk]),
                                PGPOParams()).token_advantages)
    assert torch.equal(torch.cat(parts)[torch.argsort(order)], whole)


def test_placebo_moves_the_weights():
    """On a response with one dominant token, the seeds of 20 steps put it elsewhere most of the time."""
    n = 16
    dependency = torch.zeros(1, n)
    dependency[0, 5] = 50.0
    mask = torch.ones(1, n)
    peaks = []
    for step in range(20):
        out = PLACEBO.fn(ShapingBatch(torch.ones(1), mask, dependency, seeds=_seeds(1, step)), PGPOParams())
        peaks.append(int(out.token_advantages.argmax()))
    assert peaks.count(5) <= 4 and len(set(peaks)) >= 8
    assert out.stats["moved_fraction"] > 0 and out.stats["max"] == pytest.approx(
        pgpo_token_weights(dependency, mask).max().item())


def test_response_seeds_are_a_pure_function_of_seed_step_process_row():
    a = response_seeds(0, 7, 1, 5)
    assert torch.equal(a, response_seeds(0, 7, 1, 5)) and a.dtype == torch.int64
    assert torch.equal(response_seeds(0, 7, 1, 8)[:5], a)  # row i's seed does not depend on the batch size
    assert len(set(a.tolist())) == 5 and (a >= 0).all()
    for other in (response_seeds(1, 7, 1, 5), response_seeds(0, 8, 1, 5), response_seeds(0, 7, 0, 5)):
        assert not set(other.tolist()) & set(a.tolist())


def test_the_variant_files_are_dapo_with_the_control_shapers():
    dapo, pgpo = load_method("dapo"), load_method("pgpo")
    oracle = load_method(REPO / "baselines/variants/dapo_oracle.yaml")
    placebo = load_method(REPO / "baselines/variants/dapo_placebo.yaml")
    for method in (oracle, placebo):
        assert method.loss == dapo.loss and method.dynamic_sampling == dapo.dynamic_sampling
    assert oracle.shaper.name == "oracle" and resolve_components(oracle).blind_view is None
    assert placebo.shaper.name == "placebo" and placebo.blind_view == pgpo.blind_view
    ours = resolve_components(placebo)
    assert ours.shaper.params == resolve_components(pgpo).shaper.params  # PGPO's parameters, inherited
    assert ours.blind_view is not None and ours.shaper.entry.per_response


def test_placebo_with_the_variant_file_has_pgpos_weights_per_response():
    """The two YAMLs as trained: per response, the placebo's multiset of token advantages is PGPO's."""
    pg = resolve_components(load_method("pgpo")).shaper
    pl = resolve_components(load_method(REPO / "baselines/variants/dapo_placebo.yaml")).shaper
    g = torch.Generator().manual_seed(0)
    dependency, mask = torch.rand(6, 10, generator=g) ** 4 * 5, torch.ones(6, 10)
    mask[2, 7:] = 0
    adv = torch.randn(6, generator=g)
    a = pg.entry.fn(ShapingBatch(adv, mask, dependency), pg.params).token_advantages
    b = pl.entry.fn(ShapingBatch(adv, mask, dependency, seeds=_seeds(6)), pl.params).token_advantages
    assert torch.equal(torch.sort(a, -1).values, torch.sort(b, -1).values) and not torch.equal(a, b)
