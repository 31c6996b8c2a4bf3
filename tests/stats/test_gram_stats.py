"""Gradient-estimator statistics from Gram matrices (pgpo/stats/gram_stats.py) on constructed vectors with a known mean
and covariance: signal, noise and noise scale recovered, alignment and split-half agreement where they are known."""

import numpy as np
import pytest

from pgpo.stats.gram_stats import bootstrap_stats, estimator_stats


def _gram(vectors: np.ndarray) -> np.ndarray:
    """[M,N,d] -> [M,N,M,N]."""
    m, n, d = vectors.shape
    flat = vectors.reshape(m * n, d)
    return (flat @ flat.T).reshape(m, n, m, n)


def _estimators(n=400, d=60, seed=0):
    """Three estimators of one mean direction over the same groups: a (mean mu, noise sd 0.5 per coordinate),
    b = a's groups with 3x the noise (shared draw, so paired), c (an orthogonal mean, same noise as a)."""
    rng = np.random.default_rng(seed)
    mu = np.zeros(d)
    mu[:10] = 1.0  # |mu|^2 = 10
    nu = np.zeros(d)
    nu[10:20] = 1.0  # orthogonal to mu, |nu|^2 = 10
    z = rng.standard_normal((n, d))
    a = mu + 0.5 * z
    b = mu + 1.5 * z
    c = nu + 0.5 * rng.standard_normal((n, d))
    return np.stack([a, b, c]), d


def test_signal_noise_and_noise_scale_are_recovered():
    vectors, d = _estimators()
    stats = estimator_stats(_gram(vectors), reference=0)
    a, b, c = stats
    assert a["signal"] == pytest.approx(10.0, rel=0.05) and b["signal"] == pytest.approx(10.0, rel=0.1)
    assert a["noise"] == pytest.approx(0.25 * d, rel=0.05) and b["noise"] == pytest.approx(2.25 * d, rel=0.05)
    assert a["noise_scale"] == pytest.approx(0.25 * d / 10, rel=0.1)
    assert b["noise_scale"] / a["noise_scale"] == pytest.approx(9.0, rel=0.15)
    assert a["cosine_of_means"] == pytest.approx(1.0)  # the reference with itself
    assert b["cosine_of_expectations"] == pytest.approx(1.0, abs=0.05)  # same expected direction
    assert b["cosine_of_means"] < a["cosine_of_means"]  # noise shrinks the cosine of means, not of expectations
    assert abs(c["cosine_of_expectations"]) < 0.1 and abs(c["cosine_of_means"]) < 0.1  # orthogonal means


def test_split_half_agreement_matches_its_expectation():
    """Halves of n groups: each mean is mu + noise of trace tr(C) / (n/2); the cosine of the two is about
    |mu|^2 / (|mu|^2 + 2 tr(C) / n)."""
    vectors, d = _estimators(n=40)
    a, b, _ = estimator_stats(_gram(vectors), splits=200)
    for row, var in ((a, 0.25), (b, 2.25)):
        expected = 10 / (10 + 2 * var * d / 40)
        assert row["split_half"] == pytest.approx(expected, abs=0.08)
    assert b["split_half"] < a["split_half"]


def test_pure_noise_has_no_signal():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1, 300, 40))
    (row,) = estimator_stats(_gram(vectors))
    assert abs(row["signal"]) < 0.5 and row["noise"] == pytest.approx(40, rel=0.1)


def test_paired_bootstrap_intervals_cover_the_truth_and_are_ordered():
    vectors, d = _estimators(n=120, seed=3)
    out = bootstrap_stats(_gram(vectors), ["a", "b", "c"], reference="a", bootstrap=300, seed=0)
    a = out["per_estimator"]["a"]
    for stat in ("signal", "noise", "noise_scale"):
        lo, hi = a[stat]["ci95"]
        assert lo <= a[stat]["value"] <= hi, stat
    lo, hi = a["split_half"]["range95"]  # over random splits; no bootstrap interval (biased by repeated groups)
    assert lo <= a["split_half"]["value"] <= hi and a["split_half"]["ci95"] is None
    lo, hi = a["noise"]["ci95"]
    assert lo < 0.25 * d < hi
    lo, hi = out["noise_scale_ratio"]["b"]["a"]["ci95"]
    assert lo < 9.0 < hi and lo > 4  # paired draws: the ratio's interval is tight around 9
    assert a["cosine_of_means"]["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert out["noise_scale_ratio"]["a"]["b"]["value"] == pytest.approx(1 / out["noise_scale_ratio"]["b"]["a"]["value"])


def test_bad_shapes_and_names_are_refused():
    with pytest.raises(ValueError, match=r"\[M,N,M,N\]"):
        estimator_stats(np.zeros((2, 3, 2, 3)))
    with pytest.raises(ValueError, match="unique"):
        bootstrap_stats(np.zeros((2, 5, 2, 5)), ["x", "x"])
