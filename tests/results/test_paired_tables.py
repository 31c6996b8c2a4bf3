"""Difference-to-reference views (pgpo.results.paired_tables) on hand-made results and training curves, and their plan
(pgpo.workflow.plan: reference rows from the config, seeds per row, the check of the reference names)."""

import csv
import json

import numpy as np
import pytest

from pgpo.workflow import plan
from pgpo.config.schema import REPO, ConfigError
from pgpo.stats.paired import PairingError
from pgpo.results.paired_tables import build_and_write, curve_view, question_view

CONFIG = REPO / "workflows/config"


def fake_eval(run_dir, samples_by_bench, ids=None):
    """<run_dir>/<bench>.json with per-question samples (lists of 0/1) as `pgpo score` writes them."""
    run_dir.mkdir(parents=True)
    for bench, samples in samples_by_bench.items():
        per_q = [{"id": (ids or {}).get(bench, [str(i) for i in range(len(samples))])[i],
                  "mean": float(np.mean(s)), "samples": [float(x) for x in s]} for i, s in enumerate(samples)]
        (run_dir / f"{bench}.json").write_text(json.dumps({"per_question": per_q, "k": len(samples[0]), "avg_at_k": 0.0,
                                                                   "checkpoint_hash": "c", "samples_sha256": "s"}))
    return str(run_dir)


@pytest.fixture
def three_rows(tmp_path):
    """base (one evaluation), ref (2 seeds), arm (2 seeds); benchmarks x (3 questions) and y (2), k = 2."""
    rows = {
        "base": [fake_eval(tmp_path / "base", {"x": [[0, 0], [0, 0], [1, 0]], "y": [[0, 0], [0, 0]]})],
        "ref": [fake_eval(tmp_path / "ref0", {"x": [[1, 0], [0, 0], [1, 1]], "y": [[1, 0], [0, 0]]}),
                fake_eval(tmp_path / "ref1", {"x": [[1, 1], [0, 0], [1, 0]], "y": [[0, 0], [1, 0]]})],
        "arm": [fake_eval(tmp_path / "arm0", {"x": [[1, 1], [1, 0], [1, 1]], "y": [[1, 1], [0, 0]]}),
                fake_eval(tmp_path / "arm1", {"x": [[1, 1], [0, 0], [1, 1]], "y": [[1, 0], [1, 1]]})]}
    seeds = {"base": [None], "ref": [0, 1], "arm": [0, 1]}
    return rows, seeds


def test_question_view_hand_values(three_rows):
    rows, seeds = three_rows
    view = question_view(rows, seeds, {"base": "ref", "arm": "ref"}, ["x", "y"], ["x", "y"], bootstrap=500)
    arm = view["arm"]["columns"]
    # x: seed 0 (2.5 - 1.5) / 3, seed 1 (2.0 - 1.5) / 3; y: seed 0 (1 - 0.5) / 2, seed 1 (1.5 - 0.5) / 2
    assert arm["x"]["per_seed"] == pytest.approx([1 / 3, 1 / 6]) and arm["y"]["per_seed"] == pytest.approx([.25, .5])
    assert arm["avg"]["per_seed"] == pytest.approx([(1 / 3 + .25) / 2, (1 / 6 + .5) / 2])
    assert arm["avg"]["mean"] == pytest.approx(np.mean([(1 / 3 + .25) / 2, (1 / 6 + .5) / 2]))
    assert arm["avg"]["p_value"] == 0.5 and arm["avg"]["n_questions"] == 5
    # the start model's one evaluation is paired with each seed of the reference
    base = view["base"]
    assert base["shared_evaluation"] and base["eval_dirs"] == {"0": rows["base"][0], "1": rows["base"][0]}
    assert base["columns"]["x"]["per_seed"] == pytest.approx([(0.5 - 1.5) / 3, (0.5 - 1.5) / 3])
    assert "ref" not in view  # the reference row is not compared with itself


def test_unpairable_questions_name_both_files(tmp_path, three_rows):
    rows, seeds = three_rows
    rows["arm"][1] = fake_eval(tmp_path / "other", {"x": [[1, 1], [0, 0], [1, 1]], "y": [[1, 0], [1, 1]]},
                               ids={"x": ["0", "2", "1"]})
    with pytest.raises(PairingError, match=r"seed 1: .*other/x.json and .*ref1/x.json hold different questions"):
        question_view(rows, seeds, {"arm": "ref"}, ["x", "y"], ["x", "y"], bootstrap=100)


def write_metrics(run_dir, rewards):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "reward": r}) + "\n"
                                                   for i, r in enumerate(rewards)))
    return str(run_dir)


def test_curve_view_mean_level_and_blocks(tmp_path):
    steps = np.arange(1, 21)
    ref = {str(s): write_metrics(tmp_path / f"ref{s}", 0.3 + 0.01 * steps + 0.02 * s) for s in range(3)}
    arm = {str(s): write_metrics(tmp_path / f"arm{s}", 0.3 + 0.02 * steps + 0.02 * s + 0.01 * (s == 2))
           for s in range(3)}
    out = curve_view({"arm": arm, "ref": ref}, {"arm": "ref"}, ["reward", "entropy"], block=10, bootstrap=500)
    c = out["arm"]["reward"]
    # the difference is 0.01 * step (+ 0.01 in seed 2): mean level over steps 1-20 = 0.105 (+ 0.01)
    assert c["steps"] == [1, 20] and c["auc"]["per_seed"] == pytest.approx([0.105, 0.105, 0.115])
    assert [(b["start"], b["end"]) for b in c["blocks"]] == [(1, 10), (11, 20)]
    assert c["blocks"][0]["mean"] == pytest.approx(0.055 + 0.01 / 3) and c["auc"]["p_value"] == 0.25
    assert out["arm"]["entropy"]["missing"] == sorted([*arm.values(), *ref.values()])  # said, not dropped


def test_build_and_write_files_records_and_html(tmp_path, three_rows):
    rows, seeds = three_rows
    runs = {lab: {"0": write_metrics(tmp_path / f"run-{lab}0", [0.1, 0.2]),
                  "1": write_metrics(tmp_path / f"run-{lab}1", [0.1, 0.3])} for lab in ("arm", "ref")}
    spec = {"target": "t", "title": "T", "rows": rows, "seeds": seeds, "reference": {"base": "ref", "arm": "ref"},
            "benchmarks": ["x", "y"], "average_over": ["x", "y"], "out": str(tmp_path / "t"), "curve_runs": runs,
            "paired": {"bootstrap": 300, "curves": ["reward"], "curve_block": 1}}
    files, recs, fragment = build_and_write(spec, {"x": "X"})
    assert [f.name for f in files] == ["t.diff.md", "t.diff.csv", "t.diff.json"]
    md = files[0].read_text()
    assert "| arm | ref | " in md and "| base (one evaluation, shared by every seed) | ref |" in md
    assert "Smallest difference this design detects (80% power, 5% two-sided" in md
    assert "the sign-flip test over 2 seeds cannot give p below 0.5 (fewer than 6 seeds never reach 0.05)" in md
    assert "## Training curve `reward`" in md and "- arm - ref: steps 1-2:" in md
    table = list(csv.DictReader(files[1].read_text().splitlines()))
    avg = next(r for r in table if r["row"] == "arm" and r["column"] == "avg")
    assert float(avg["mean"]) == pytest.approx(np.mean([(1 / 3 + .25) / 2, (1 / 6 + .5) / 2]))
    assert {r["column"] for r in table if r["row"] == "arm"} >= {"X", "y", "avg", "reward: mean level, steps 1-2",
                                                                 "reward: block mean, steps 2-2"}
    assert "shared_evaluation" in json.loads(files[2].read_text())["rows"]["base"]
    assert "<h3>Paired differences to the reference row</h3>" in fragment and len(recs) == len(table)


# ---------------------------------------------------------------- plan
@pytest.fixture(scope="module")
def quick():
    return plan.load_profile(CONFIG / "quick.yaml")


def test_reference_rows_come_from_the_config(quick):
    ref, note = plan.reference_rows(quick, "table1", REPO)
    name = quick["paired"]["reference"]["table1"]
    assert set(ref) == set(plan.table_rows(quick, "table1", REPO)) - {name} and set(ref.values()) == {name}
    assert note == ""
    ref7, _ = plan.reference_rows(quick, "table7", REPO)
    assert set(ref7.values()) == {quick["paired"]["reference"]["table7"]} and "base" in ref7
    abl, _ = plan.reference_rows(quick, "ablation_thresholds", REPO)
    assert set(abl.values()) == {quick["paired"]["reference"]["ablation_thresholds"]} and "base" not in abl
    spec = plan.TableSpec.from_json(plan.table_spec(quick, "table1", REPO).to_json())
    assert spec.seeds["base"] == [None] and spec.seeds[name] == quick["seeds"] and spec.reference == ref
    assert spec.curve_runs[name] == {str(s): f"results/quick/runs/tiny/{name}-s{s}" for s in quick["seeds"]}
    assert spec.paired == {k: v for k, v in quick["paired"].items() if k != "reference"}
    assert plan.diff_files(quick, "table7") == {f"diff_{e}": f"results/quick/table7.diff.{e}"
                                                for e in ("md", "csv", "json")}


def test_a_reference_outside_the_rows_is_said_and_a_typo_fails(quick):
    others = [m for m in plan.methods(quick) if m != quick["paired"]["reference"]["table1"]][:2]
    cfg = {**quick, "methods": others}
    ref, note = plan.reference_rows(cfg, "table1", REPO)
    assert ref == {} and "is not a row of this table" in note
    with pytest.raises(ConfigError, match=r"paired.reference.table1: unknown method 'dapoo'.*did you mean 'dapo'"):
        plan.check({**quick, "paired": {"reference": {"table1": "dapoo"}}})
    with pytest.raises(ConfigError, match=r"paired.reference.ablation_thresholds: 'tau9' is not a variant"):
        plan.check({**quick, "paired": {"reference": {"ablation_thresholds": "tau9"}}})
    with pytest.raises(ConfigError, match=r"paired.reference.table9: unknown target"):
        plan.check({**quick, "paired": {"reference": {"table9": "grpo"}}})


def test_the_paper_profile_gets_the_default_references():
    cfg = plan.load_profile(CONFIG / "paper.yaml")
    assert cfg["paired"]["reference"] == {"table1": "dapo", "table7": "grpo", "ablation_thresholds": "pgpo"}
    ref, note = plan.reference_rows(cfg, "table1", REPO)
    assert ref["3b pgpo"] == "3b dapo" and ref["7b base"] == "7b dapo" and note == ""
