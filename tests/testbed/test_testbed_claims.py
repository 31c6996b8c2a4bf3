"""The claims table (issue 21, item 4) on constructed records and diagnostics with known answers: the verdict rule,
every claim's measurement, the collapse claim's "nothing to prevent" case, the plan and its config errors."""

import json

import numpy as np
import pytest

from pgpo.config.schema import REPO, ConfigError

EFFECTS = {"noise_scale_ratio": 1.3, "entropy_fall": 0.1, "filler_entropy": 0.1, "answer_share": 0.5,
           "answer_share_gain": 0.1, "forced_answer": 0.03, "auc": 0.03}


@pytest.mark.parametrize("ci,null,effect,expected", [
    ([0.01, 0.3], 0.0, 0.05, "supported"),
    ([-0.3, -0.01], 0.0, 0.05, "not supported"),          # the other side of the null
    ([-0.01, 0.04], 0.0, 0.05, "not supported"),          # holds 0 but excludes the effect of interest
    ([-0.01, 0.2], 0.0, 0.05, "inconclusive"),            # holds both
    ([-0.5, -0.2], 0.0, -0.1, "supported"),               # a "smaller" claim
    ([-0.05, 0.3], 0.0, -0.1, "not supported"),
    ([1.1, 5.0], 1.0, 1.3, "supported"),                  # a ratio
    ([0.8, 1.2], 1.0, 1.3, "not supported"),
    ([0.8, 5.0], 1.0, 1.3, "inconclusive"),
    (None, 0.0, 0.05, "inconclusive"),                    # one seed: no interval
])
def test_the_verdict_rule(ci, null, effect, expected):
    from pgpo.testbed.claims import verdict

    assert verdict(ci, null=null, effect=effect)[0] == expected


def test_an_interval_beyond_the_null_needs_the_exact_test_too():
    from pgpo.testbed.claims import verdict

    assert verdict([0.01, 0.3], null=0.0, effect=0.05, p=0.5) == (
        "inconclusive", "interval beyond the null 0, but the exact test's p = 0.5 >= 0.05")
    assert verdict([0.01, 0.3], null=0.0, effect=0.05, p=0.01)[0] == "supported"
    assert verdict([-0.3, -0.01], null=0.0, effect=0.05, p=0.5)[0] == "not supported"  # excludes the effect


def test_an_effect_of_interest_equal_to_the_null_is_refused():
    from pgpo.testbed.claims import verdict

    with pytest.raises(ValueError, match="must differ from the null"):
        verdict([0, 1], null=0.0, effect=0.0)


def _record(arm, seed, *, forced_shift, entropy_slope, share, auc):
    rng = np.random.default_rng(seed)
    steps = list(range(1, 21))
    jitter = rng.normal(0, 0.01, size=20)
    base = {k: rng.uniform(0.2, 0.6, size=10) for k in ("count", "digit")}
    return {"arm": arm, "seed": seed, "variant": "v", "run": "", "global_steps": 20, "block": 5, "auc": auc + 0.001 * seed,
            "steps_to_gain": None, "filler_entropy": 3.6 + 20 * entropy_slope + 0.01 * seed, "forced_mean": 0.0,
            "forced": {k: {"ids": [f"{k}{i}" for i in range(10)], "p": list(v + forced_shift)} for k, v in base.items()},
            "curves": {"entropy_non_answer": {"metric": "entropy/non_answer", "steps": steps,
                                              "values": list(3.6 + entropy_slope * np.array(steps) + jitter)},
                       "answer_share": {"metric": "credit/answer_share", "steps": steps,
                                        "values": list(share + jitter)}}}


def _diagnostic(path, ratio, ci):
    cell = {"value": ratio, "ci95": ci}
    table = {"dapo": {"pgpo": cell}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"methods": ["dapo", "pgpo", "dapo_oracle"], "groups": 32,
                                "adam": {"noise_scale_ratio": table}, "raw": {"noise_scale_ratio": table}}))
    return str(path)


def _spec(tmp_path, *, dapo_slope=-0.02, pgpo_shift=0.05, ratio=(5.0, [2.0, 9.0])):
    paths = []
    for arm, kw in (("dapo", dict(forced_shift=0.0, entropy_slope=dapo_slope, share=0.02, auc=0.40)),
                    ("pgpo", dict(forced_shift=pgpo_shift, entropy_slope=0.0, share=0.9, auc=0.40 + pgpo_shift))):
        for seed in range(8):
            p = tmp_path / "records" / f"{arm}-s{seed}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(_record(arm, seed, **kw)))
            paths.append(str(p))
    return {"arm": "pgpo", "reference": "dapo", "records": paths,
            "diagnostics": {"warmstart": _diagnostic(tmp_path / "diag/warmstart.json", *ratio)},
            "diagnostic_arms": ["dapo", "pgpo"], "diagnostic_reference": "oracle", "effects": EFFECTS,
            "curves": {"entropy": "entropy_non_answer", "answer_share": "answer_share"}, "block": 5,
            "bootstrap": 2000, "out": str(tmp_path / "claims")}


def test_constructed_effects_are_recovered_and_supported(tmp_path):
    from pgpo.testbed.claims import measure_claims, write_claims

    result = measure_claims(_spec(tmp_path))
    assert {c: v["verdict"] for c, v in result["claims"].items()} == {
        "variance_reduction": "supported", "collapse_prevention": "supported", "sparse_dependency": "supported",
        "learning": "supported"}
    rows = {r["measurement"]: r for r in result["rows"]}
    fall = rows["dapo: filler entropy change over training (last - first block of 5 steps, nats)"]
    assert fall["value"] == pytest.approx(-0.02 * 15, abs=0.02) and fall["n"] == 8  # block means 3 and 18
    assert fall["p_value"] == pytest.approx(2 / 2 ** 8)
    assert rows["final filler entropy pgpo - dapo (nats, held-out)"]["value"] == pytest.approx(0.4)
    forced = next(r for r in result["rows"] if r["measurement"].startswith("forced-answer"))
    assert forced["value"] == pytest.approx(0.05)
    share = next(r for r in result["rows"] if r["measurement"].startswith("pgpo: share"))
    assert share["value"] == pytest.approx(0.9, abs=0.01) and share["verdict"] == "supported"
    ratio = next(r for r in result["rows"] if "Adam" in r["measurement"])
    assert (ratio["value"], ratio["ci95_low"], ratio["decisive"]) == (5.0, 2.0, True)
    md = write_claims(_spec(tmp_path))[0].read_text()
    assert "| learning | **supported** |" in md and "noise-scale ratio dapo/pgpo, Adam-preconditioned" in md


def test_no_entropy_fall_under_the_reference_leaves_collapse_untestable(tmp_path):
    from pgpo.testbed.claims import measure_claims

    result = measure_claims(_spec(tmp_path, dapo_slope=0.0))
    assert result["claims"]["collapse_prevention"] == {
        "verdict": "inconclusive", "why": "no significant entropy fall under the reference: no collapse to prevent here"}


def test_no_difference_at_high_power_is_not_supported(tmp_path):
    from pgpo.testbed.claims import measure_claims

    result = measure_claims(_spec(tmp_path, pgpo_shift=0.0, ratio=(1.0, [0.9, 1.1])))
    assert result["claims"]["learning"]["verdict"] == "not supported"
    assert result["claims"]["variance_reduction"]["verdict"] == "not supported"


def test_a_diagnostic_of_other_methods_is_named(tmp_path):
    from pgpo.testbed.claims import measure_claims

    spec = _spec(tmp_path)
    spec["diagnostic_arms"] = ["dapo", "pgpo", "placebo"]
    with pytest.raises(ValueError, match="do not match the diagnostic arms"):
        measure_claims(spec)


# -- plan ---------------------------------------------------------------------------------------------------------
def _config(overrides=None):
    from test_testbed import _profile

    return _profile("workflows/config/testbed_quick.yaml", {"testbed": overrides or {}})


def test_the_claims_plan_points_at_core_checkpoints():
    from pgpo.testbed import plan

    config = _config()
    assert plan.diagnostic_points(config) == ["warmstart", "pgpo-s1"]
    assert plan.diagnostic_checkpoint(config, "warmstart") == "results/testbed_quick/testbed/random2/warmstart"
    assert plan.diagnostic_checkpoint(config, "pgpo-s1") == "results/testbed_quick/testbed/random2/runs/pgpo-s1/checkpoint-2"
    assert plan.diagnostic_input(config, "pgpo-s1").endswith("random2/runs/pgpo-s1/run.json")
    spec = json.loads(plan.claims_spec(config))
    assert spec["records"] == [plan.record_path(config, "random2", a, s) for a in ("dapo", "pgpo") for s in (0, 1)]
    assert spec["experiment"] == "testbed_quick/credit_testbed_core" and set(spec["diagnostics"]) == {"warmstart",
                                                                                                     "pgpo-s1"}


@pytest.mark.parametrize("change,message", [
    ({"arm": "dapo"}, "must be a core arm other than the reference"),
    ({"diagnostic": {"at": ["pgpo-s9"]}}, "testbed.claims.diagnostic.at"),
    ({"diagnostic": {"arms": ["dapo", "oracle"]}}, r"arm\(s\) \['oracle'\] not in testbed.arms"),
    ({"diagnostic": {"groups": 2}}, "groups: an integer >= 4"),
    ({"effects": {"noise_scale_ratio": 0.9}}, "noise_scale_ratio > 1"),
    ({"colour": 1}, "testbed.claims: expected keys"),
])
def test_bad_claims_configs_are_named(change, message):
    from pgpo.testbed import plan

    with pytest.raises(ConfigError, match=message):
        plan.check(_config({"claims": change}), REPO)


def test_an_infinite_noise_scale_is_not_estimable_not_a_number(tmp_path):
    from pgpo.testbed.claims import markdown, measure_claims

    result = measure_claims(_spec(tmp_path, ratio=(None, None)))
    ratio = next(r for r in result["rows"] if "Adam" in r["measurement"])
    assert ratio["value"] is None and ratio["verdict"] == "inconclusive" and "not estimable" in ratio["why"]
    assert result["claims"]["variance_reduction"]["verdict"] == "inconclusive"
    assert "| variance_reduction | noise-scale ratio dapo/pgpo, Adam-preconditioned, at warmstart (32 groups) * |  |" \
        in markdown(result, "p") and "not estimable at this sample size" in markdown(result, "p")


def test_a_ratio_without_an_interval_says_why(tmp_path):
    from pgpo.testbed.claims import measure_claims

    ratio = next(r for r in measure_claims(_spec(tmp_path, ratio=(284.0, None)))["rows"] if "Adam" in r["measurement"])
    assert ratio["verdict"] == "inconclusive" and ratio["why"].startswith("no interval: most bootstrap draws")
