"""pass@k and maj@k on constructed samples with known answers (pgpo/stats/pass_at_k.py)."""

from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgpo.stats.pass_at_k import majority, pass_at


def test_pass_at_k_by_hand():
    assert pass_at([0, 0, 0, 0], 4) == 0.0 and pass_at([0, 1, 0, 0], 4) == 1.0
    assert pass_at([0, 1, 0, 0], 1) == pytest.approx(0.25)  # pass@1 is avg@k
    assert pass_at([1, 1, 0, 0], 2) == pytest.approx(1 - 1 / 6)  # C(2,2)/C(4,2): both draws wrong in 1 of 6
    with pytest.raises(ValueError):
        pass_at([1, 0], 3)


@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=8), st.data())
def test_pass_at_j_is_the_share_of_j_subsets_with_a_correct_sample(scores, data):
    j = data.draw(st.integers(1, len(scores)))
    subsets = list(combinations(range(len(scores)), j))
    exact = sum(any(scores[i] == 1.0 for i in s) for s in subsets) / len(subsets)
    assert pass_at(scores, j) == pytest.approx(exact)
    assert pass_at(scores, 1) == pytest.approx(sum(scores) / len(scores))


def test_majority_vote_by_hand():
    assert majority(["3", "5", "3", None], [1, 0, 1, 0]) == 1.0  # 3 wins 2 votes to 1
    assert majority(["5", "3", None, None], [0, 1, 0, 0]) == 0.0  # a tie goes to the answer seen first
    assert majority([None, None], [0, 0]) == 0.0
    assert majority([None, "b"], [0, 1]) == 1.0  # no answer does not vote
