"""Statistics of per-group gradient estimators from their Gram matrix (pure numpy; no torch, no trl).

M estimators (methods) each give one gradient vector per prompt group, for the same N groups (the same rollouts).
Everything is computed from the Gram matrix K [M,N,M,N], K[a,i,b,j] = <g_{a,i}, g_{b,j}>, so vectors of millions
of parameters reduce to (M N)^2 numbers once. For estimator a, with g_i i.i.d. over groups of mean mu, covariance C:

- signal |mu|^2, unbiased: mean of the off-diagonal K[a,i,a,j], i != j (E<g_i, g_j> = |mu|^2 for i != j);
- noise tr(C), unbiased: the sample covariance's trace, (sum_i K_ii - N |g_bar|^2) / (N - 1);
- noise scale (in groups) tr(C) / |mu|^2: the number of groups at which the mean's noise equals the signal (the
  "simple noise scale" of McCandlish et al. 2018); larger = more groups needed for the same signal-to-noise;
- split-half agreement: the cosine between the means of two disjoint random halves of the groups (averaged over
  `splits` random splits), reported with the 2.5-97.5% range over the splits instead of a bootstrap interval:
  a bootstrap draw repeats groups, which makes its halves noisier and biases the agreement down (the percentile
  interval then misses the point estimate);
- alignment with a reference estimator r: the cosine of the two means over the N groups (1 for r itself; shrunk
  toward 0 by noise), and the cosine of the expectations, <mu_a, mu_r> / (|mu_a| |mu_r|) from off-diagonal means
  (unbiased numerator and denominators; None when a signal estimate is not positive).
Intervals: a percentile bootstrap over groups, the SAME group draw for every estimator (paired); pairs of draws of
the same original group never count as off-diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOT_BOOTSTRAPPED = {"split_half"}  # its spread over random splits is reported instead (see the module docstring)


def _offdiag_mean(block: np.ndarray, ids: np.ndarray) -> float:
    """Mean of block[i, j] over pairs whose original groups differ (ids: the group each row/column is)."""
    other = ids[:, None] != ids[None, :]
    return float(block[other].mean()) if other.any() else float("nan")


def estimator_stats(gram: np.ndarray, reference: int | None = None, ids: np.ndarray | None = None,
                    splits: int = 20, seed: int = 0) -> list[dict]:
    """The statistics of every estimator from gram [M,N,M,N] (N groups, ids [N]: the original group of each
    position, for bootstrap draws with repeats). Returns one dict per estimator: signal, noise, noise_scale,
    split_half, and with a `reference` index, cosine_of_means and cosine_of_expectations with it."""
    m, n = gram.shape[0], gram.shape[1]
    if gram.shape != (m, n, m, n) or n < 4:
        raise ValueError(f"gram must be [M,N,M,N] with N >= 4 groups, got {gram.shape}")
    ids = np.arange(n) if ids is None else np.asarray(ids)
    rng = np.random.default_rng(seed)
    groups = np.unique(ids)
    halves = []  # (first, second) positions; every copy of a group on one side (a bootstrap draw repeats groups)
    for _ in range(splits):
        first_groups = rng.permutation(groups)[: len(groups) // 2]
        in_first = np.isin(ids, first_groups)
        halves.append((np.flatnonzero(in_first), np.flatnonzero(~in_first)))
    signals = [_offdiag_mean(gram[a, :, a, :], ids) for a in range(m)]
    out = []
    for a in range(m):
        k = gram[a, :, a, :]
        mean_sq = float(k.mean())  # |g_bar|^2
        noise = (float(np.trace(k)) - n * mean_sq) / (n - 1)
        signal = signals[a]
        agreement = []
        for first, second in halves:
            cross = k[np.ix_(first, second)].mean()
            norm = np.sqrt(k[np.ix_(first, first)].mean() * k[np.ix_(second, second)].mean())
            agreement.append(cross / norm if norm > 0 else np.nan)
        finite = np.array(agreement, dtype=float)
        finite = finite[np.isfinite(finite)]
        row = {"signal": signal, "noise": noise, "noise_scale": noise / signal if signal > 0 else float("inf"),
               "split_half": float(finite.mean()) if finite.size else float("nan"),
               "split_half_range": ([float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
                                    if finite.size else None)}
        if reference is not None:
            r = gram[reference, :, reference, :]
            cross = gram[a, :, reference, :]
            denominator = np.sqrt(mean_sq * float(r.mean()))
            row["cosine_of_means"] = float(cross.mean()) / denominator if denominator > 0 else float("nan")
            both = signal > 0 and signals[reference] > 0
            row["cosine_of_expectations"] = (_offdiag_mean(cross, ids) / np.sqrt(signal * signals[reference])
                                             if both else None)
        out.append(row)
    return out


def bootstrap_stats(gram: np.ndarray, names: Sequence[str], reference: str | None = None, *,
                    bootstrap: int = 1000, seed: int = 0) -> dict:
    """Point estimates and paired 95% percentile intervals (the same group draw for every estimator) of
    estimator_stats, plus the noise-scale ratio of every ordered pair of estimators. Returns
    {"per_estimator": {name: {stat: {"value", "ci95"}}}, "noise_scale_ratio": {a: {b: {"value", "ci95"}}}}."""
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"estimator names must be unique, got {names}")
    ref = names.index(reference) if reference is not None else None
    n = gram.shape[1]
    point = estimator_stats(gram, ref, seed=seed)
    rng = np.random.default_rng(seed)
    draws: list[list[dict]] = []
    for _ in range(bootstrap):
        idx = rng.integers(0, n, n)
        if len(np.unique(idx)) < 2:
            continue
        sub = gram[:, idx][:, :, :, idx]
        draws.append(estimator_stats(sub, ref, ids=idx, splits=4, seed=int(rng.integers(1 << 31))))

    def interval(values: list) -> list[float] | None:
        finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
        if finite.size < max(10, len(values) // 2):  # most draws undefined: no honest interval
            return None
        return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]

    per = {}
    for a, name in enumerate(names):
        per[name] = {stat: {"value": value, "ci95": None if stat in NOT_BOOTSTRAPPED else interval(
            [d[a][stat] for d in draws])} for stat, value in point[a].items() if stat != "split_half_range"}
        per[name]["split_half"]["range95"] = point[a]["split_half_range"]

    def ratio(x: float, y: float) -> float:
        return x / y if np.isfinite(x) and np.isfinite(y) and y > 0 else float("nan")

    ratios = {a: {b: {"value": ratio(point[i]["noise_scale"], point[j]["noise_scale"]),
                      "ci95": interval([ratio(d[i]["noise_scale"], d[j]["noise_scale"]) for d in draws])}
                  for j, b in enumerate(names) if j != i}
              for i, a in enumerate(names)}
    return {"per_estimator": per, "noise_scale_ratio": ratios, "bootstrap": len(draws)}
