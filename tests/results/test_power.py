"""The power planner (pgpo.results.power) on constructed per-sample results with known variance components, and
`pgpo power` on a finished (hand-made) target."""

import json
import math

import numpy as np
import pytest

from pgpo.cli import main
from pgpo.stats.paired import detect_factor, paired_question_difference
from pgpo.results.power import Components, estimate, needed

SEED_SD, QUESTION_SD, CELL_SD = 0.03, 0.06, 0.04


def simulate(rng, n_seeds=10, questions=(150, 150), k=8, delta=0.0, question_sd=QUESTION_SD, cell_sd=CELL_SD):
    """0/1 samples of two arms. Probability of a correct sample: the question's base rate + (arm) delta + a
    question effect shared by the seeds + a seed effect + a seed x question effect. Known components of the
    difference: seed SEED_SD^2, question QUESTION_SD^2, seed x question CELL_SD^2 (split over both arms),
    sampling E[p(1-p)] of both arms."""
    arm, ref, samp = {}, {}, []
    base = [rng.uniform(0.3, 0.7, q) for q in questions]
    shared = [rng.normal(0, question_sd, q) for q in questions]
    for s in range(n_seeds):
        sa, sr = rng.normal(0, SEED_SD / math.sqrt(2), 2)
        arm[s], ref[s] = [], []
        for b, u in zip(base, shared):
            pa = np.clip(b + delta + u + sa + rng.normal(0, cell_sd / math.sqrt(2), b.size), 0, 1)
            pr = np.clip(b + sr + rng.normal(0, cell_sd / math.sqrt(2), b.size), 0, 1)
            samp.append(np.mean(pa * (1 - pa) + pr * (1 - pr)))
            for side, p in ((arm[s], pa), (ref[s], pr)):
                x = (rng.random((b.size, k)) < p[:, None]).astype(float)
                side.append({"means": x.mean(axis=1), "samples": [list(r) for r in x], "k": k})
    return arm, ref, float(np.mean(samp))


def test_components_are_recovered_on_average():
    rng = np.random.default_rng(0)
    est, true_sample = [], []
    for _ in range(30):
        arm, ref, s2 = simulate(rng)
        est.append(estimate(arm, ref))
        true_sample.append(s2)
    assert np.mean([c.sample for c in est]) == pytest.approx(np.mean(true_sample), rel=0.03)
    assert np.mean([c.question for c in est]) == pytest.approx(QUESTION_SD ** 2, rel=0.15)
    assert np.mean([c.seed_question for c in est]) == pytest.approx(CELL_SD ** 2, rel=0.25)
    assert np.mean([c.seed for c in est]) == pytest.approx(SEED_SD ** 2, rel=0.3)
    assert est[0].n_seeds == 10 and est[0].questions == 150 and est[0].benchmarks == 2 and est[0].k == 8


def test_the_planner_se_is_the_paired_interval_se():
    """At the measured design the planner's standard error is pgpo.stats.paired's (same moments, same data) when no
    component estimate is clamped at 0 (a clamp only raises the planner's; large components here avoid it)."""
    arm, ref, _ = simulate(np.random.default_rng(1), n_seeds=4, questions=(60, 60), question_sd=0.2, cell_sd=0.2)
    c = estimate(arm, ref)
    assert c.question > 0 and c.seed_question > 0  # the seed clamp is the same in both
    r = paired_question_difference({s: [b["means"] for b in v] for s, v in arm.items()},
                                   {s: [b["means"] for b in v] for s, v in ref.items()}, bootstrap=200)
    assert math.sqrt(c.variance(4, 60, 8)) == pytest.approx(r["se"], rel=1e-9)
    assert needed(c, 0.02)["mde80_now"] == pytest.approx(r["mde80"], rel=1e-9)


def test_unpaired_components_keep_the_question_difficulty_that_pairing_cancels():
    from pgpo.results.power import row_components

    arm, ref, _ = simulate(np.random.default_rng(5), n_seeds=6, questions=(200, 200))
    apart = row_components(arm) + row_components(ref)
    # difficulty ~ U(0.3, 0.7) per question, in both rows: variance 0.4^2 / 12 each, on top of the paired terms
    assert apart.question == pytest.approx(estimate(arm, ref).question + 2 * 0.4 ** 2 / 12, rel=0.25)
    assert needed(apart, 0.02)["seeds"] is None and needed(estimate(arm, ref), 0.02)["seeds"] is not None


def test_needed_design_meets_the_budget_and_one_less_does_not():
    c = Components(seed=2e-5, question=0.004, seed_question=0.002, sample=0.4, n_seeds=2, questions=50,
                   benchmarks=7, k=8)
    plan = needed(c, 0.02)
    budget = (0.02 / detect_factor()) ** 2  # 5.1e-5
    for key, var in (("seeds", lambda n: c.variance(n, 50, 8)), ("questions", lambda n: c.variance(2, n, 8)),
                     ("samples", lambda n: c.variance(2, 50, n))):
        n = plan[key]
        assert var(n) <= budget < var(n - 1), key
    assert (plan["questions"], plan["samples"]) == (105, 22)  # by hand: 0.03 / Q / 7 <= 4.1e-5; 0.004 / k ...
    # samples alone cannot when the seed term at 2 seeds (0.002 / 2) already exceeds the budget
    assert needed(Components(0.002, 0.004, 0.002, 0.4, 2, 50, 7, 8), 0.02)["samples"] is None


def result_dir(path, records, bench, samples=True):
    path.mkdir(parents=True, exist_ok=True)
    per_q = [{"id": str(i), "mean": float(m), **({"samples": smp} if samples else {})}
             for i, (m, smp) in enumerate(zip(records["means"], records["samples"]))]
    (path / f"{bench}.json").write_text(json.dumps({"per_question": per_q, "k": records["k"]}))
    return str(path)


def finished_target(tmp_path, samples=True):
    arm, ref, _ = simulate(np.random.default_rng(2), n_seeds=3, questions=(40, 40))
    rows = {"arm": {"eval_dirs": {}, "reference_dirs": {}, "reference": "ref", "shared_evaluation": False},
            "base": {"shared_evaluation": True, "reference": "ref"}}
    for s in range(3):
        for b, bench in enumerate(("x", "y")):
            rows["arm"]["eval_dirs"][str(s)] = result_dir(tmp_path / f"arm{s}", arm[s][b], bench, samples)
            rows["arm"]["reference_dirs"][str(s)] = result_dir(tmp_path / f"ref{s}", ref[s][b], bench, samples)
    (tmp_path / "t1.diff.json").write_text(json.dumps({"average_over": ["x", "y"], "benchmarks": ["x", "y"],
                                                       "rows": rows}))
    return tmp_path / "t1"


def test_pgpo_power_prints_components_and_the_design(tmp_path, capsys):
    target = finished_target(tmp_path)
    assert main(["power", "--target", str(target), "--difference", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "1 paired comparison(s), 3 seed(s) x 40 questions x 2 benchmark(s) x k=8 samples" in out
    for line in ("seed", "question", "seed x question", "sampling", "total SE"):
        assert f"  {line}" in out
    assert "to detect 5.00 points (80% power, 5% two-sided, paired):" in out
    assert " seeds (with 40 questions, k=8)" in out and "note: base: one evaluation for every seed" in out
    assert "  unpaired (two rows' own intervals, question difficulty not cancelled): SE now" in out


def test_old_results_without_samples_get_the_bernoulli_estimate_and_a_note(tmp_path, capsys):
    new = estimate_from(finished_target(tmp_path / "new"))
    old = estimate_from(finished_target(tmp_path / "old", samples=False))
    assert old.sample == pytest.approx(new.sample, rel=1e-12)  # 0/1 scores: the Bernoulli variance is exact
    assert main(["power", "--target", str(tmp_path / "old/t1"), "--difference", "0.05"]) == 0
    assert "have no per-sample scores (written before they were kept" in capsys.readouterr().out
    assert main(["power", "--target", str(tmp_path / "none"), "--difference", "0.05"]) == 2
    assert "none.diff.json: missing (run the target first" in capsys.readouterr().err


def estimate_from(target):
    from pgpo.results.power import target_components

    parts, _, _ = target_components(target)
    return parts["arm - ref"]
