"""Paired comparisons of two arms (training methods, variants) evaluated on the same questions with the same seeds.

Pure numpy + the standard library. Used by the tables' difference views, the power planner and the testbed.

The design. Each arm is trained once per training seed s (the same seed trains both arms: same prompt order and
sampling RNG, so the seed is a block), and every trained model answers the same questions q of every benchmark b.
The unit of comparison is the paired difference of one question's score, D[s,b,q] = arm[s,b,q] - ref[s,b,q]:
question difficulty cancels in it. What remains varies with

- the training seed (v_s: one seed's arm happens to be better overall),
- the question (u_q: a question on which the arm is better in every seed; the questions are the SAME for every
  seed, so this term is shared by all seeds: questions and seeds are crossed, not nested),
- the cell (the seed-by-question interaction plus the sampling noise of the k samples behind each score).

The statistic is T = mean over seeds of (mean over benchmarks of the question mean of D). Its variance is
    Var(T) = s2_seed / S + sum_b [ s2_question_b + s2_cell_b / S ] / (B^2 Q_b).
The two-level bootstrap draws the seeds (with replacement) and, per benchmark, the questions (one draw shared by
every seed and by both arms: the pairing is exact). A naive nested bootstrap (fresh question draw inside every
drawn seed) counts the cell noise twice (once through the seed means, once through the questions) and divides
the shared question term by S; here the seed level resamples the per-seed deviations shrunk so that their
variance is the method-of-moments seed component (cell noise removed, small-sample corrected), and the question
level resamples the seed-averaged question differences (which carry the question term and the cell noise / S).
The bootstrap variance then equals Var(T)'s unbiased estimate; the interval is the bootstrap's 2.5-97.5 percentiles.

mde80: the smallest true difference this design detects with 80% power at alpha 5% when "detects" means the 95%
interval excludes 0: (z_0.975 + z_0.80) * SE = 2.80 * SE (normal approximation). The p-value is a different
test, exact and assumption-free but coarse: the sign-flip test over the per-seed differences, whose smallest
possible two-sided p is 2 / 2^S (S < 6 seeds can never reach 0.05; reported as `sign_flip_min_p`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

from pgpo.util.errors import UserError

MAX_SIGN_FLIP_N = 20
_CHUNK = 1000  # bootstrap replicates drawn at once (memory: _CHUNK x questions integers)


class PairingError(UserError, ValueError):
    """The two arms cannot be paired (different seeds, benchmarks or questions); the message names what differs."""


def detect_factor(alpha: float = 0.05, power: float = 0.8) -> float:
    """z_(1 - alpha/2) + z_power: a two-sided level-alpha test detects a true difference of this many standard
    errors with probability `power` (2.80 at 5% / 80%)."""
    normal = NormalDist()
    return normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)


# ---------------------------------------------------------------- exact test over seeds
def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact two-sided sign-flip (permutation) p-value of mean(differences) = 0.

    differences: [n] per-block differences (n <= 20). Under the null each difference is symmetric about 0, so all
    2^n sign patterns are equally likely; p = share of patterns whose |sum| is at least the observed |sum|
    (n = 3, all positive: 2/8). Ties are counted (with a relative tolerance for float round-off)."""
    d = np.asarray(differences, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("sign_flip_p: no differences")
    if d.size > MAX_SIGN_FLIP_N:
        raise ValueError(f"sign_flip_p: {d.size} differences; the exact test enumerates 2^n patterns, n <= "
                         f"{MAX_SIGN_FLIP_N}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"sign_flip_p: non-finite difference(s) at {np.flatnonzero(~np.isfinite(d)).tolist()}")
    n = d.size
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    patterns = np.arange(2 ** n, dtype=np.int64)
    hits = 0
    for start in range(0, patterns.size, 1 << 16):
        block = patterns[start:start + (1 << 16)]
        signs = 1.0 - 2.0 * ((block[:, None] >> np.arange(n)) & 1)  # [m, n] of +-1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return hits / 2 ** n


# ---------------------------------------------------------------- per-question paired differences
def _seeds(arm: Mapping, ref: Mapping) -> list:
    missing_ref = sorted(set(arm) - set(ref), key=str)
    missing_arm = sorted(set(ref) - set(arm), key=str)
    if missing_ref or missing_arm:
        parts = ([f"seed(s) {missing_ref} only in the arm"] if missing_ref else []) + (
            [f"seed(s) {missing_arm} only in the reference"] if missing_arm else [])
        raise PairingError("paired comparison: " + "; ".join(parts) + " (the same seeds must train both arms)")
    if not arm:
        raise PairingError("paired comparison: no seeds")
    return sorted(arm, key=lambda s: (str(type(s)), s))


def question_differences(arm: Mapping[int, Sequence[np.ndarray]], ref: Mapping[int, Sequence[np.ndarray]]
                         ) -> tuple[list, list[np.ndarray]]:
    """Validated per-question differences: (seeds, [D_b of shape [S, Q_b] for every benchmark b])."""
    seeds = _seeds(arm, ref)
    n_bench = {s: (len(arm[s]), len(ref[s])) for s in seeds}
    counts = {c for pair in n_bench.values() for c in pair}
    if len(counts) != 1 or 0 in counts:
        raise PairingError(f"paired comparison: benchmarks per seed (arm, reference) {n_bench}; every seed of both "
                           f"arms needs one score array per benchmark, the same benchmarks")
    diffs = []
    for b in range(counts.pop()):
        rows = []
        for s in seeds:
            a, r = np.asarray(arm[s][b], dtype=float), np.asarray(ref[s][b], dtype=float)
            if a.ndim != 1 or a.shape != r.shape or a.size == 0:
                raise PairingError(f"paired comparison: seed {s}, benchmark {b}: arm has {a.shape} scores, reference "
                                   f"{r.shape}; both need the same questions in the same order")
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
                raise PairingError(f"paired comparison: seed {s}, benchmark {b}: non-finite score(s)")
            rows.append(a - r)
        sizes = {row.size for row in rows}
        if len(sizes) != 1:
            raise PairingError(f"paired comparison: benchmark {b} has {[row.size for row in rows]} questions in seeds "
                               f"{seeds}; every seed must answer the same questions")
        diffs.append(np.stack(rows))
    return seeds, diffs


def variance_components(diffs: list[np.ndarray]) -> dict:
    """Method-of-moments components of Var(T) from the per-benchmark difference tables D_b [S, Q_b].

    Returns {"seed": s2_seed / S or None (1 seed: not estimable), "question": sum_b Var(question means over seeds)
    / (B^2 Q_b) (the question term plus the cell noise / S), "cell": the cell noise's share of one seed's mean
    (sum_b MS_residual_b / (B^2 Q_b); None with 1 seed), "per_seed": [S] seed means of T}. Variances of T, in
    (score units)^2."""
    n_seeds, n_bench = diffs[0].shape[0], len(diffs)
    per_seed = np.mean([d.mean(axis=1) for d in diffs], axis=0)  # [S]
    question = 0.0
    cell = 0.0
    for d in diffs:
        q = d.shape[1]
        col = d.mean(axis=0)
        question += (col.var(ddof=1) if q > 1 else 0.0) / (n_bench ** 2 * q)
        if n_seeds > 1 and q > 1:
            resid = d - d.mean(axis=1, keepdims=True) - col[None, :] + d.mean()
            cell += float((resid ** 2).sum() / ((n_seeds - 1) * (q - 1))) / (n_bench ** 2 * q)
    if n_seeds == 1:
        return {"seed": None, "question": float(question), "cell": None, "per_seed": per_seed}
    seed_var = max(0.0, float(per_seed.var(ddof=1)) - cell)  # between-seed variance with the cell noise removed
    return {"seed": seed_var / n_seeds, "question": float(question), "cell": cell, "per_seed": per_seed}


def _percentiles(stats: np.ndarray) -> list[float]:
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def _resampled_means(values: np.ndarray, bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """[bootstrap] means of `values` [n] resampled with replacement."""
    out = np.empty(bootstrap)
    for start in range(0, bootstrap, _CHUNK):
        m = min(_CHUNK, bootstrap - start)
        out[start:start + m] = values[rng.integers(0, values.size, size=(m, values.size))].mean(axis=1)
    return out


def _scaled_deviations(values: np.ndarray, target_var_of_mean: float) -> np.ndarray:
    """values - mean, rescaled so that the bootstrap variance of their resampled mean (population variance / n) is
    `target_var_of_mean`: removes the cell noise from the seed level and the (n-1)/n bias of the bootstrap."""
    dev = values - values.mean()
    pop = float(dev.var())
    if pop <= 0 or target_var_of_mean <= 0:
        return np.zeros_like(dev)
    return dev * math.sqrt(target_var_of_mean * values.size / pop)


def paired_question_difference(arm: Mapping[int, Sequence[np.ndarray]], ref: Mapping[int, Sequence[np.ndarray]], *,
                               bootstrap: int = 10000, seed: int = 0) -> dict:
    """Paired difference arm - ref of per-question scores, seeds as blocks (see the module docstring).

    arm, ref: seed -> [B] arrays, one per benchmark, of per-question scores [Q_b] (the same questions in the same
    order for both arms and every seed; the same seeds in both). Statistic: mean over seeds of (mean over
    benchmarks of the question mean of arm - ref).
    Returns {"mean", "ci95": [lo, hi] (two-level bootstrap, the same question draw for both arms), "p_value"
    (exact sign-flip over the per-seed differences), "per_seed": [S], "seeds", "n_seeds", "n_questions" (all
    benchmarks), "questions_per_benchmark", "se", "mde80", "sign_flip_min_p", "components" ({"seed",
    "question", "cell"}: variances of the mean), "notes": [what the interval cannot include]}."""
    seeds, diffs = question_differences(arm, ref)
    comp = variance_components(diffs)
    per_seed = comp["per_seed"]
    mean = float(per_seed.mean())
    n_bench = len(diffs)
    rng = np.random.default_rng(seed)
    seed_part = _resampled_means(_scaled_deviations(per_seed, comp["seed"] or 0.0), bootstrap, rng)
    question_part = np.zeros(bootstrap)
    for d in diffs:
        col = d.mean(axis=0)
        q = col.size
        target = (col.var(ddof=1) if q > 1 else 0.0) / q
        question_part += _resampled_means(_scaled_deviations(col, target), bootstrap, rng) / n_bench
    stats = mean + seed_part + question_part
    se = math.sqrt((comp["seed"] or 0.0) + comp["question"])
    notes = []
    if len(seeds) == 1:
        notes.append("1 seed: seed-to-seed variation is in neither the interval nor mde80")
    if any(d.shape[1] == 1 for d in diffs):
        notes.append("a benchmark with 1 question: its question variation is not estimable (counted as 0)")
    return {"mean": mean, "ci95": _percentiles(stats), "p_value": sign_flip_p(per_seed),
            "per_seed": [float(v) for v in per_seed], "seeds": list(seeds), "n_seeds": len(seeds),
            "n_questions": int(sum(d.shape[1] for d in diffs)),
            "questions_per_benchmark": [int(d.shape[1]) for d in diffs], "se": se, "mde80": detect_factor() * se,
            "sign_flip_min_p": 2.0 / 2 ** len(seeds) if len(seeds) > 1 else 1.0,
            "components": {k: comp[k] for k in ("seed", "question", "cell")}, "notes": notes}


# ---------------------------------------------------------------- per-seed scalars (curves)
def paired_seed_difference(arm: Mapping[int, float], ref: Mapping[int, float], *, bootstrap: int = 10000,
                           seed: int = 0) -> dict:
    """Paired difference arm - ref of one scalar per training seed (area under a curve, steps to a threshold, a
    final entropy). arm, ref: seed -> float, the same seeds in both (a seed missing from one side is an error
    naming it). Returns the keys of paired_question_difference except the question ones: {"mean", "ci95"
    (bootstrap over seeds, small-sample corrected; None with 1 seed), "p_value", "per_seed", "seeds", "n_seeds",
    "se", "mde80" (None with 1 seed), "sign_flip_min_p", "notes"}."""
    seeds = _seeds(arm, ref)
    bad = [s for s in seeds if not (math.isfinite(float(arm[s])) and math.isfinite(float(ref[s])))]
    if bad:
        raise PairingError(f"paired comparison: seed(s) {bad}: non-finite value (a curve that never reached its "
                           f"threshold is not a number: censor it before comparing)")
    d = np.array([float(arm[s]) - float(ref[s]) for s in seeds])
    mean = float(d.mean())
    if d.size == 1:
        return {"mean": mean, "ci95": None, "p_value": 1.0, "per_seed": [mean], "seeds": list(seeds), "n_seeds": 1,
                "se": None, "mde80": None, "sign_flip_min_p": 1.0,
                "notes": ["1 seed: no interval, no test (seed-to-seed variation unknown)"]}
    var_mean = float(d.var(ddof=1)) / d.size
    stats = mean + _resampled_means(_scaled_deviations(d, var_mean), bootstrap, np.random.default_rng(seed))
    se = math.sqrt(var_mean)
    return {"mean": mean, "ci95": _percentiles(stats), "p_value": sign_flip_p(d), "per_seed": [float(v) for v in d],
            "seeds": list(seeds), "n_seeds": int(d.size), "se": se, "mde80": detect_factor() * se,
            "sign_flip_min_p": 2.0 / 2 ** d.size, "notes": []}


# ---------------------------------------------------------------- curve summaries
def _curve(steps, values) -> tuple[np.ndarray, np.ndarray]:
    s, v = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    if s.size != v.size or s.size == 0:
        raise ValueError(f"curve: {s.size} steps and {v.size} values (need the same number, at least one)")
    if np.any(np.diff(s) <= 0):
        raise ValueError("curve: steps must be strictly increasing")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(v))):
        raise ValueError(f"curve: non-finite value at step(s) {s[~(np.isfinite(s) & np.isfinite(v))].tolist()}")
    return s, v


def curve_auc(steps, values, *, first: float | None = None, last: float | None = None) -> float:
    """The curve's mean level over [first, last]: trapezoid area / (last - first), linear interpolation at the
    ends. steps, values: [n] (steps strictly increasing); first/last default to the first/last step and must lie
    within the logged steps. A single step (or first == last) gives the value there."""
    s, v = _curve(steps, values)
    lo = s[0] if first is None else float(first)
    hi = s[-1] if last is None else float(last)
    if lo < s[0] or hi > s[-1] or lo > hi:
        raise ValueError(f"curve_auc: range [{lo:g}, {hi:g}] is not within the logged steps [{s[0]:g}, {s[-1]:g}]")
    if hi == lo:
        return float(np.interp(lo, s, v))
    inside = (s > lo) & (s < hi)
    xs = np.concatenate([[lo], s[inside], [hi]])
    ys = np.interp(xs, s, v)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (hi - lo))


def block_means(steps, values, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of consecutive blocks of `block` steps starting at the first step ([s0, s0+block), ...); the last
    block may be partial, blocks with no logged step are left out. Returns (block_starts [m], means [m])."""
    if block < 1:
        raise ValueError(f"block_means: block must be >= 1 step, got {block}")
    s, v = _curve(steps, values)
    index = ((s - s[0]) // block).astype(int)
    starts, means = [], []
    for i in np.unique(index):
        starts.append(s[0] + i * block)
        means.append(float(v[index == i].mean()))
    return np.array(starts), np.array(means)


def steps_to_gain(steps, values, gain: float, *, block: int) -> int | None:
    """The first step t whose block mean (over the logged steps in (t - block, t]) is at least the first block's
    mean + gain, counting only steps with a full block behind them; None if the curve never gets there."""
    s, v = _curve(steps, values)
    if block < 1:
        raise ValueError(f"steps_to_gain: block must be >= 1 step, got {block}")
    baseline = float(v[s < s[0] + block].mean())
    for t in s[s >= s[0] + block - 1]:
        window = (s > t - block) & (s <= t)
        if float(v[window].mean()) >= baseline + gain:
            return int(t)
    return None
