"""The rollout-engine vs trainer log-prob gap (pgpo/training/engine_gap.py): what is counted, on hand-made values."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.training.engine_gap import logp_gap


def test_gap_counts_completion_tokens_where_both_are_finite():
    engine = torch.tensor([[-1.0, -2.0, math.nan, -0.5], [-0.1, -3.0, -1.0, -9.0]])
    trainer = torch.tensor([[-1.5, -2.0, -1.0, -0.5], [-0.1, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])  # the last column is padding: its 8-nat gap is not counted
    gap = logp_gap(engine, trainer, mask)
    assert gap["max_abs_logp"] == 2.0 and gap["mean_abs_logp"] == (0.5 + 0 + 0 + 2.0 + 0) / 5  # NaN left out
    assert logp_gap(engine, trainer, torch.zeros_like(mask)) == {"mean_abs_logp": 0.0, "max_abs_logp": 0.0}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-20, 0), min_size=1, max_size=12), st.floats(-3, 3))
def test_gap_of_a_shift_is_the_shift(values, shift):
    trainer = torch.tensor([values], dtype=torch.float64)
    gap = logp_gap(trainer + shift, trainer, torch.ones_like(trainer))
    assert math.isclose(gap["mean_abs_logp"], abs(shift), abs_tol=1e-5)  # computed in float32
    assert math.isclose(gap["max_abs_logp"], abs(shift), abs_tol=1e-5)  # computed in float32
