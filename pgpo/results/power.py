"""The power planner: variance components of a finished target's paired comparisons, and the design (seeds,
questions per benchmark, samples per question) that detects a chosen difference with 80% power at 5%.

Model of one paired difference of a question's score (arm - reference, pgpo.stats.paired's docstring), per benchmark b:
    D[s, q] = delta + v_s + u_q + w_sq + e_sq
v: training seed (the whole arm's luck), u: question (an effect shared by every seed), w: seed x question, e: the
mean of the k sampling draws (variance s2_sample / k, s2_sample the per-draw variance of the difference, read from
the per-sample scores the evaluation keeps). Method-of-moments estimates from the two-way (seed x question) table:
    MS_residual = s2_w + s2_sample / k,  Var_q(question means) = s2_u + MS_residual / S,
    Var_s(seed means of T) = s2_v + sum_b MS_residual_b / (B^2 Q_b).
The Avg over B benchmarks of Q questions each, with S seeds and k samples, then has
    Var(T) = s2_v / S + [ s2_u / Q + (s2_w + s2_sample / k) / (S Q) ] / B
(benchmark components averaged), and a difference of 2.80 * sqrt(Var(T)) is detected with 80% power at 5% (the
interval excluding 0; pgpo.stats.paired.detect_factor). Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgpo.data.datasets import DataError
from pgpo.stats.paired import detect_factor
from pgpo.util.jsonfile import field, read_json

MAX_PLAN = 100000  # beyond this many seeds / questions / samples the plan says "not reachable"


@dataclass
class Components:
    """Variance components of one paired comparison (or their mean over several), per benchmark averaged."""

    seed: float | None
    """s2_v: variance of the seed effect on the Avg difference (None: 1 seed, not estimable)"""
    question: float
    """s2_u: variance of a question's difference shared by every seed (with 1 seed it includes seed x question)"""
    seed_question: float | None
    """s2_w: seed x question variance beyond sampling (None with 1 seed)"""
    sample: float
    """s2_sample: variance of one sampled draw's difference (both arms' draws)"""
    n_seeds: int
    """S of the measured design"""
    questions: int
    """Q of the measured design (questions per benchmark, mean over benchmarks)"""
    benchmarks: int
    """B of the measured design"""
    k: int
    """samples per question of the measured design"""

    def variance(self, seeds: int, questions: int, k: int) -> float:
        """Var(T) of a design with these components and `seeds` x `questions` per benchmark x `k` samples."""
        cell = (self.seed_question or 0.0) + self.sample / k
        return (self.seed or 0.0) / seeds + (self.question / questions + cell / (seeds * questions)) / self.benchmarks

    def __add__(self, other: Components) -> Components:
        """The components of the difference of two INDEPENDENT estimates (an unpaired comparison of two rows)."""
        def plus(a, b):
            return None if a is None or b is None else a + b

        return Components(plus(self.seed, other.seed), self.question + other.question,
                          plus(self.seed_question, other.seed_question), self.sample + other.sample, self.n_seeds,
                          self.questions, self.benchmarks, self.k)

    def se_parts(self) -> dict[str, float]:
        """Each component's share of the standard error at the measured design (score units)."""
        s, q, b, k = self.n_seeds, self.questions, self.benchmarks, self.k
        return {"seed": math.sqrt((self.seed or 0.0) / s), "question": math.sqrt(self.question / (q * b)),
                "seed x question": math.sqrt((self.seed_question or 0.0) / (s * q * b)),
                "sampling": math.sqrt(self.sample / (k * s * q * b))}


def _sample_variance(samples: list[np.ndarray] | None, means: np.ndarray, k: int) -> np.ndarray:
    """Per-question variance of one draw: from the k per-sample scores (ddof 1), or, for a result without them, the
    Bernoulli variance p (1 - p) k / (k - 1) of 0/1 scores with that mean."""
    if k < 2:
        return np.zeros_like(means)
    if samples is not None:
        return np.array([np.var(np.asarray(x, dtype=float), ddof=1) for x in samples])
    return means * (1 - means) * k / (k - 1)


def estimate(arm: dict, ref: dict) -> Components:
    """Components of one comparison. arm, ref: seed -> [B] benchmark records {"means" [Q], "samples" [Q][k] or
    None, "k"} (pgpo.results.paired_tables.load_questions), the same seeds, questions and k in both."""
    seeds = sorted(arm)
    n_seeds, n_bench = len(seeds), len(arm[seeds[0]])
    k = int(arm[seeds[0]][0]["k"])
    seed_means = np.zeros(n_seeds)
    u, w, samp, ms_share, sizes = [], [], [], 0.0, []
    for b in range(n_bench):
        d = np.stack([arm[s][b]["means"] - ref[s][b]["means"] for s in seeds])  # [S, Q]
        q = d.shape[1]
        sizes.append(q)
        seed_means += d.mean(axis=1) / n_bench
        s2 = np.mean([_sample_variance(arm[s][b]["samples"], arm[s][b]["means"], k)
                      + _sample_variance(ref[s][b]["samples"], ref[s][b]["means"], k) for s in seeds])
        samp.append(float(s2))
        col = d.mean(axis=0)
        var_col = float(col.var(ddof=1)) if q > 1 else 0.0
        if n_seeds > 1 and q > 1:
            resid = d - d.mean(axis=1, keepdims=True) - col[None, :] + d.mean()
            ms = float((resid ** 2).sum() / ((n_seeds - 1) * (q - 1)))
            ms_share += ms / (n_bench ** 2 * q)
            w.append(max(0.0, ms - s2 / k))
            u.append(max(0.0, var_col - ms / n_seeds))
        else:  # one seed: the question and seed x question terms cannot be told apart
            u.append(max(0.0, var_col - s2 / k))
    seed = max(0.0, float(seed_means.var(ddof=1)) - ms_share) if n_seeds > 1 else None
    return Components(seed, float(np.mean(u)), float(np.mean(w)) if w else None, float(np.mean(samp)), n_seeds,
                      round(np.mean(sizes)), n_bench, k)


def row_components(row: dict) -> Components:
    """One row's own components (its question term is the questions' difficulty, which pairing cancels):
    `estimate` against a reference that scores 0 everywhere."""
    zero = {s: [{"means": np.zeros_like(b["means"]), "samples": None, "k": b["k"]} for b in v] for s, v in row.items()}
    return estimate(row, zero)


def pooled(parts: list[Components]) -> Components:
    """The mean of several comparisons' components (same design)."""
    seeds = [p.seed for p in parts if p.seed is not None]
    sq = [p.seed_question for p in parts if p.seed_question is not None]
    return Components(float(np.mean(seeds)) if seeds else None, float(np.mean([p.question for p in parts])),
                      float(np.mean(sq)) if sq else None, float(np.mean([p.sample for p in parts])),
                      parts[0].n_seeds, parts[0].questions, parts[0].benchmarks, parts[0].k)


def needed(c: Components, difference: float, alpha: float = 0.05, power: float = 0.8) -> dict:
    """The smallest seeds (at the measured Q and k), questions per benchmark (at the measured S and k) and samples
    per question (at the measured S and Q) for which `difference` is detected; None: not reachable by that
    dimension alone (the other terms already exceed the budget)."""
    budget = (difference / detect_factor(alpha, power)) ** 2

    def smallest(fn) -> int | None:
        if fn(MAX_PLAN) > budget:
            return None
        lo, hi = 1, MAX_PLAN
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fn(mid) <= budget else (mid + 1, hi)
        return lo

    return {"seeds": smallest(lambda n: c.variance(n, c.questions, c.k)),
            "questions": smallest(lambda n: c.variance(c.n_seeds, n, c.k)),
            "samples": smallest(lambda n: c.variance(c.n_seeds, c.questions, n)),
            "se_now": math.sqrt(c.variance(c.n_seeds, c.questions, c.k)),
            "mde80_now": detect_factor(alpha, power) * math.sqrt(c.variance(c.n_seeds, c.questions, c.k))}


# ---------------------------------------------------------------- a finished target
def target_components(target: str | Path) -> tuple[dict[str, Components], list[str], dict[str, Components]]:
    """(row - reference -> Components, notes, the same comparisons unpaired) for every seeded row of a finished
    target, read from <target>.diff.json (written by its table step) and the per-sample results it points at (the
    Avg's benchmarks). A row whose one evaluation stands for every seed (the start model) is left out, said in a
    note."""
    from pgpo.results.paired_tables import load_questions

    path = Path(f"{target}.diff.json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run the target first: its table step writes it)")
    view = read_json(path, "the target's table step", what="paired-table view")
    benchmarks = field(view, path, "average_over") or field(view, path, "benchmarks")
    out, unpaired, notes, old = {}, {}, [], set()
    for label, row in view["rows"].items():
        if row.get("shared_evaluation"):
            notes.append(f"{label}: one evaluation for every seed: left out of the components")
            continue
        arm = {s: [load_questions(d, b) for b in benchmarks] for s, d in row["eval_dirs"].items()}
        ref = {s: [load_questions(d, b) for b in benchmarks] for s, d in row["reference_dirs"].items()}
        old |= {q["path"] for side in (arm, ref) for qs in side.values() for q in qs if q["samples"] is None}
        out[f"{label} - {row['reference']}"] = estimate(arm, ref)
        unpaired[f"{label} - {row['reference']}"] = row_components(arm) + row_components(ref)
    if not out:
        raise DataError(f"{path}: no row with seeded runs compared with a reference: nothing to estimate")
    if old:
        notes.append(f"{len(old)} result file(s) have no per-sample scores (written before they were kept; e.g. "
                     f"{min(old)}): their sampling variance is the Bernoulli p(1-p)k/(k-1) of 0/1 scores; "
                     f"`pgpo score --run <eval dir>` rewrites them with the scores")
    if next(iter(out.values())).n_seeds == 1:
        notes.append("1 seed: the seed component is not estimable (taken as 0: the seeds needed are a lower bound) "
                     "and seed x question is counted as question")
    return out, notes, unpaired


def report(target: str | Path, difference: float, alpha: float = 0.05, power: float = 0.8) -> str:
    """The planner's printout: components (as standard-error shares of the measured design, in points), then the
    design that detects `difference` (a fraction: 0.02 = 2 points)."""
    parts, notes, unpaired = target_components(target)
    c = pooled(list(parts.values()))
    if c.variance(c.n_seeds, c.questions, c.k) == 0:
        notes.append("every measured component is 0 (every score equal, e.g. no answer right): nothing to plan from")
    plan = needed(c, difference, alpha, power)
    apart = needed(pooled(list(unpaired.values())), difference, alpha, power)
    pt = 100.0
    lines = [(f"{target}: {len(parts)} paired comparison(s), {c.n_seeds} seed(s) x {c.questions} questions x "
             f"{c.benchmarks} benchmark(s) x k={c.k} samples"), "",
             ("variance components of the Avg difference (pooled over the comparisons), as their share of the "
             "standard error at this design, in points:")]
    lines += [f"  {name:16s} {v * pt:6.2f}" for name, v in c.se_parts().items()]
    lines += [(f"  {'total SE':16s} {plan['se_now'] * pt:6.2f}   -> smallest detectable now: "
              f"{plan['mde80_now'] * pt:.2f} points"), "",
              f"to detect {difference * pt:.2f} points ({power:.0%} power, {alpha:.0%} two-sided, paired):"]
    for key, unit, keep in (("seeds", "seeds", f"{c.questions} questions, k={c.k}"),
                            ("questions", "questions per benchmark", f"{c.n_seeds} seeds, k={c.k}"),
                            ("samples", "samples per question", f"{c.n_seeds} seeds, {c.questions} questions")):
        v = plan[key]
        lines.append(f"  {v} {unit} (with {keep})" if v is not None else
                     f"  no number of {unit} alone (with {keep}): the other terms exceed the budget")
    lines += [f"  unpaired (two rows' own intervals, question difficulty not cancelled): SE now "
              f"{apart['se_now'] * pt:.2f}, smallest detectable {apart['mde80_now'] * pt:.2f} points; "
              + (f"{apart['seeds']} seeds" if apart["seeds"] else "no number of seeds")
              + f" at {c.questions} questions"]
    lines += ["", "per comparison (SE shares in points: seed, question, seed x question, sampling):"]
    for name, p in parts.items():
        lines.append(f"  {name}: " + ", ".join(f"{v * pt:.2f}" for v in p.se_parts().values()))
    return "\n".join(lines + [f"note: {n}" for n in notes]) + "\n"
