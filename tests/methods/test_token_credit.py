"""The credit statistics every method logs (pgpo/methods/token_credit.py) on constructed batches with known values."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.methods.token_credit import answer_share, entropy_split, reward_means, reward_name

MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
ANSWER = torch.tensor([[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)


def test_answer_share_of_sequence_advantages_is_the_token_share_weighted_by_abs_advantage():
    adv = torch.tensor([[2.0, 2.0, 2.0, 2.0, 0.0], [-1.0, -1.0, -1.0, 0.0, 0.0]])  # DAPO: A_i on every token
    # answer mass 2 + 1 = 3 of 8 + 3 = 11
    assert answer_share(adv, ANSWER, MASK) == pytest.approx(3 / 11)
    assert answer_share(adv * ANSWER, ANSWER, MASK) == 1.0  # all credit on the answer
    assert answer_share(adv * ~ANSWER, ANSWER, MASK) == 0.0


def test_answer_share_ignores_padding_and_its_degenerate_cases():
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0, 99.0], [1.0, 1.0, 1.0, 99.0, 99.0]])  # garbage on padding
    assert answer_share(adv, ANSWER | ~MASK.bool(), MASK) == pytest.approx(2 / 7)
    assert answer_share(adv, torch.zeros_like(ANSWER), MASK) == 0.0  # no answer token: 0
    assert answer_share(torch.zeros(2, 5), ANSWER, MASK) is None  # no advantage mass: undefined, not logged


def test_entropy_split_means_over_answer_and_other_tokens():
    entropies = torch.tensor([[0.1, 0.2, 3.0, 0.3, 50.0], [0.4, 2.0, 0.5, 50.0, 50.0]])
    answer, rest = entropy_split(entropies, ANSWER, MASK)
    assert answer == pytest.approx(2.5) and rest == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5)
    assert entropy_split(entropies, torch.zeros_like(ANSWER), MASK)[0] is None  # no answer token: no mean
    full = torch.ones_like(MASK, dtype=torch.bool)
    assert entropy_split(entropies, full, MASK)[1] is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.floats(-3, 3, allow_nan=False)), min_size=1, max_size=6),
       st.integers(0, 10**6))
def test_answer_share_is_a_share(rows, seed):
    width = 9
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(rows), width)
    adv = torch.randn(len(rows), width, generator=g)
    answer = torch.rand(len(rows), width, generator=g) < 0.3
    for i, (n, a) in enumerate(rows):
        mask[i, :n] = 1
        adv[i] *= a
    share = answer_share(adv, answer, mask)
    if share is not None:
        assert 0.0 <= share <= 1.0 + 1e-6
        flipped = answer_share(adv, ~answer, mask)
        if (answer & mask.bool()).any() and (~answer & mask.bool()).any():
            assert share + flipped == pytest.approx(1.0, abs=1e-5)  # answer + the rest = all the mass


def test_reward_means_over_every_row_named_without_the_suffix():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [float("nan"), float("nan")], [1.0, 0.0]])
    assert reward_means(rewards, ["accuracy_reward", "format_reward"]) == {
        "accuracy": pytest.approx(2 / 3), "format": pytest.approx(2 / 3)}
    assert reward_name("length_penalty") == "length_penalty"
    assert reward_means(torch.full((2, 1), math.nan), ["accuracy_reward"]) == {}
    with pytest.raises(ValueError, match="2 columns for 1 reward functions"):
        reward_means(rewards, ["accuracy_reward"])
