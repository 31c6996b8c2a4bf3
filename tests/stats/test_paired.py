"""pgpo.stats.paired on constructed data with known answers: exact sign-flip counts, interval coverage and the power
behind mde80 on simulated designs (seed, question and cell components with a known true difference), invariants
(hypothesis), pairing errors, and the curve summaries."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.stats.paired import (
    PairingError,
    block_means,
    curve_auc,
    detect_factor,
    paired_question_difference,
    paired_seed_difference,
    sign_flip_p,
    steps_to_gain,
)


# ---------------------------------------------------------------- sign flip: hand counts
@pytest.mark.parametrize("d, p", [([1.0, 2.0, 3.0], 2 / 8),      # all positive: only ++ + and - - - reach |6|
                                  ([3.0, 1.0, -1.0], 6 / 8),     # sums 5,3,3,1,-1,-3,-3,-5: six with |s| >= 3
                                  ([1.0, -1.0], 1.0), ([0.5], 1.0), ([2.0, 2.0], 2 / 4),
                                  ([1.0] * 6, 2 / 64)])
def test_sign_flip_p_equals_the_hand_count(d, p):
    assert sign_flip_p(d) == pytest.approx(p)


def test_sign_flip_p_matches_brute_force_and_refuses_too_many():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1, 9)
    import itertools

    hits = sum(abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product([1, -1], repeat=9))
    assert sign_flip_p(d) == pytest.approx(hits / 2 ** 9)
    with pytest.raises(ValueError, match="n <= 20"):
        sign_flip_p(np.ones(21))
    with pytest.raises(ValueError, match="no differences"):
        sign_flip_p([])


# ---------------------------------------------------------------- simulated designs with known components
def simulate(rng, delta, n_seeds=6, questions=(40, 40), sd_seed=0.02, sd_question=0.05, sd_cell=0.15,
             sd_difficulty=0.3):
    """Scores of two arms: question difficulty (cancels in the pair), a question x arm effect shared by every
    seed (sd_question), a seed effect per arm (the difference has sd_seed), cell noise (seed x question and
    sampling, sd_cell on the difference). True difference arm - ref = delta."""
    arm, ref = {}, {}
    difficulty = [rng.normal(0.5, sd_difficulty, q) for q in questions]
    shared = [rng.normal(0, sd_question, q) for q in questions]
    for s in range(n_seeds):
        seed_a, seed_r = rng.normal(0, sd_seed / math.sqrt(2), 2)
        arm[s] = [d + delta + u + seed_a + rng.normal(0, sd_cell / math.sqrt(2), d.size)
                  for d, u in zip(difficulty, shared)]
        ref[s] = [d + seed_r + rng.normal(0, sd_cell / math.sqrt(2), d.size) for d in difficulty]
    return arm, ref


def true_se(n_seeds=6, questions=(40, 40), sd_seed=0.02, sd_question=0.05, sd_cell=0.15):
    b = len(questions)
    return math.sqrt(sd_seed ** 2 / n_seeds + sum((sd_question ** 2 + sd_cell ** 2 / n_seeds) / q
                                                  for q in questions) / b ** 2)


def test_interval_covers_the_true_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(7)
    reps, covered, widths = 400, 0, []
    for i in range(reps):
        arm, ref = simulate(rng, delta=0.03)
        r = paired_question_difference(arm, ref, bootstrap=1000, seed=i)
        covered += r["ci95"][0] <= 0.03 <= r["ci95"][1]
        widths.append(r["ci95"][1] - r["ci95"][0])
    assert 0.91 <= covered / reps <= 0.98, covered / reps
    # the interval's width is the design's: 2 x 1.96 x the true standard error, within 10%
    assert np.mean(widths) == pytest.approx(2 * 1.96 * true_se(), rel=0.1)


def test_a_naive_nested_bootstrap_would_be_too_narrow_here():
    """Why the question draw is shared by the seeds: with a question x arm effect common to every seed, a fresh
    question draw per seed divides that effect by S. This design's SE is the crossed one."""
    rng = np.random.default_rng(3)
    ses = [paired_question_difference(*simulate(rng, 0.0, sd_question=0.15, sd_cell=0.05), bootstrap=200)["se"]
           for _ in range(50)]
    assert np.mean(ses) == pytest.approx(true_se(sd_question=0.15, sd_cell=0.05), rel=0.1)
    nested = math.sqrt(0.02 ** 2 / 6 + sum((0.15 ** 2 + 0.05 ** 2) / (6 * 40) for _ in range(2)) / 4)
    assert nested < 0.6 * true_se(sd_question=0.15, sd_cell=0.05)


def test_mde80_is_the_difference_detected_with_80_percent_power():
    """Estimate mde80 on the design, then simulate the design with that true difference: the interval excludes
    0 in about 80% of the runs."""
    rng = np.random.default_rng(11)
    mdes = [paired_question_difference(*simulate(rng, 0.0), bootstrap=200)["mde80"] for _ in range(60)]
    mde = float(np.mean(mdes))
    assert mde == pytest.approx(detect_factor() * true_se(), rel=0.08)
    reps, detected = 400, 0
    for i in range(reps):
        r = paired_question_difference(*simulate(rng, mde), bootstrap=1000, seed=i)
        detected += r["ci95"][0] > 0 or r["ci95"][1] < 0
    assert abs(detected / reps - 0.80) <= 0.06, detected / reps
    assert detect_factor() == pytest.approx(1.959964 + 0.841621, abs=1e-5)


def test_one_seed_gives_question_level_interval_and_says_so():
    rng = np.random.default_rng(0)
    arm, ref = simulate(rng, 0.1, n_seeds=1)
    r = paired_question_difference(arm, ref, bootstrap=500)
    assert r["n_seeds"] == 1 and r["p_value"] == 1.0 and r["components"]["seed"] is None
    assert r["ci95"][0] < r["mean"] < r["ci95"][1] and "1 seed" in r["notes"][0]


def test_hand_computed_mean_per_seed_and_counts():
    arm = {0: [np.array([1.0, 0.0, 1.0]), np.array([1.0, 1.0])], 1: [np.array([1.0, 1.0, 1.0]), np.array([0.0, 1.0])]}
    ref = {0: [np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0])], 1: [np.array([1.0, 0.0, 1.0]), np.array([0.0, 0.0])]}
    r = paired_question_difference(arm, ref, bootstrap=200)
    # seed 0: (1/3 + 1/2) / 2; seed 1: (1/3 + 1/2) / 2
    assert r["per_seed"] == pytest.approx([5 / 12, 5 / 12]) and r["mean"] == pytest.approx(5 / 12)
    assert r["n_questions"] == 5 and r["questions_per_benchmark"] == [3, 2] and r["p_value"] == 0.5
    assert r["sign_flip_min_p"] == 0.5 and r["seeds"] == [0, 1]


# ---------------------------------------------------------------- invariants
@st.composite
def two_arms(draw):
    n_seeds = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))

    def one():
        return {s: [np.array(draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=q, max_size=q)))
                    for q in sizes] for s in range(n_seeds)}
    return one(), one()


@settings(max_examples=40, deadline=None)
@given(two_arms())
def test_swapping_the_arms_negates_the_mean_and_interval_and_keeps_p(arms):
    arm, ref = arms
    a = paired_question_difference(arm, ref, bootstrap=300, seed=5)
    b = paired_question_difference(ref, arm, bootstrap=300, seed=5)
    assert b["mean"] == pytest.approx(-a["mean"], abs=1e-12) and b["p_value"] == a["p_value"]
    assert b["ci95"] == pytest.approx([-a["ci95"][1], -a["ci95"][0]], abs=1e-9)
    assert b["mde80"] == pytest.approx(a["mde80"], abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(two_arms(), st.floats(-0.5, 0.5, allow_nan=False))
def test_a_constant_added_to_every_arm_score_shifts_mean_and_interval_by_it(arms, c):
    arm, ref = arms
    shifted = {s: [v + c for v in vs] for s, vs in arm.items()}
    a = paired_question_difference(arm, ref, bootstrap=300, seed=2)
    b = paired_question_difference(shifted, ref, bootstrap=300, seed=2)
    assert b["mean"] == pytest.approx(a["mean"] + c, abs=1e-9)
    # 1e-8, not 1e-9: CI's hypothesis run (2026-12-03) found arms {0: [0, 0, 0], 1: [0, 0, 0]} vs
    # {0: [0, 0, 0], 1: [0, 0, 0.5]}, c = 0.5 off by 2.3e-9 in the upper bound (not yet explained; far below any
    # reported digit)
    assert b["ci95"] == pytest.approx([a["ci95"][0] + c, a["ci95"][1] + c], abs=1e-8)
    assert b["se"] == pytest.approx(a["se"], abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.integers(0, 30), st.floats(-1, 1, allow_nan=False), min_size=2, max_size=8))
def test_seed_difference_swaps_and_is_exact_on_its_mean(values):
    ref = {s: 0.1 * s for s in values}
    a = paired_seed_difference(values, ref, bootstrap=300)
    b = paired_seed_difference(ref, values, bootstrap=300)
    assert a["mean"] == pytest.approx(np.mean([values[s] - ref[s] for s in values]))
    assert b["mean"] == pytest.approx(-a["mean"]) and b["p_value"] == a["p_value"]
    assert a["ci95"][0] <= a["mean"] + 1e-12 and a["mean"] <= a["ci95"][1] + 1e-12


# ---------------------------------------------------------------- pairing errors
def test_pairing_errors_name_what_differs():
    one = {0: [np.ones(3)], 1: [np.ones(3)]}
    with pytest.raises(PairingError, match=r"seed\(s\) \[2\] only in the reference"):
        paired_question_difference(one, {**one, 2: [np.ones(3)]})
    with pytest.raises(PairingError, match="seed 1, benchmark 0: arm has \\(3,\\) scores, reference \\(4,\\)"):
        paired_question_difference(one, {0: [np.ones(3)], 1: [np.ones(4)]})
    with pytest.raises(PairingError, match="benchmarks per seed"):
        paired_question_difference(one, {0: [np.ones(3), np.ones(3)], 1: [np.ones(3)]})
    with pytest.raises(PairingError, match=r"seed\(s\) \[1\] only in the arm"):
        paired_seed_difference({0: 1.0, 1: 2.0}, {0: 1.0})
    with pytest.raises(PairingError, match=r"seed\(s\) \[0\]: non-finite"):
        paired_seed_difference({0: float("nan"), 1: 2.0}, {0: 1.0, 1: 1.0})


def test_seed_difference_hand_values_and_one_seed():
    r = paired_seed_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0}, bootstrap=2000)
    assert r["mean"] == 2.0 and r["p_value"] == 0.25 and r["per_seed"] == [1.0, 2.0, 3.0]
    assert r["se"] == pytest.approx(1 / math.sqrt(3)) and r["mde80"] == pytest.approx(detect_factor() / math.sqrt(3))
    assert 0.7 < r["ci95"][0] < 2.0 < r["ci95"][1] < 3.3  # deviations x sqrt(3/2): extremes 2 -+ 1.22
    one = paired_seed_difference({4: 1.0}, {4: 0.5})
    assert one["mean"] == 0.5 and one["ci95"] is None and one["mde80"] is None


# ---------------------------------------------------------------- curves
def test_curve_auc_is_the_mean_level():
    steps = np.arange(1, 31)
    assert curve_auc(steps, 2 * steps) == pytest.approx(31.0)  # a line: its midpoint value
    assert curve_auc(steps, np.full(30, 0.4)) == pytest.approx(0.4)
    assert curve_auc([0, 10], [0.0, 1.0], first=5) == pytest.approx(0.75)
    assert curve_auc([0, 10], [0.0, 1.0], first=2, last=4) == pytest.approx(0.3)
    assert curve_auc([3], [0.7]) == 0.7
    with pytest.raises(ValueError, match="not within the logged steps"):
        curve_auc([1, 2], [0.0, 1.0], last=5)
    with pytest.raises(ValueError, match="strictly increasing"):
        curve_auc([2, 1], [0.0, 1.0])


def test_block_means_and_steps_to_gain():
    steps = np.arange(1, 31)
    values = np.where(steps <= 10, 0.2, np.where(steps <= 20, 0.25, 0.4))
    starts, means = block_means(steps, values, 10)
    assert starts.tolist() == [1, 11, 21] and means == pytest.approx([0.2, 0.25, 0.4])
    starts, means = block_means([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 2)
    assert starts.tolist() == [1, 3, 5] and means.tolist() == [1.5, 3.5, 5.0]
    # trailing 10-step means first reach 0.2 + 0.1 at step 24 (steps 15-24: 6 x 0.25 + 4 x 0.4 = 3.1 / 10; step 23
    # has 7 x 0.25 + 3 x 0.4 = 2.95 / 10)
    assert steps_to_gain(steps, values, 0.1, block=10) == 24
    assert steps_to_gain(steps, values, 0.5, block=10) is None
    assert steps_to_gain(steps, values, 0.0, block=10) == 10
