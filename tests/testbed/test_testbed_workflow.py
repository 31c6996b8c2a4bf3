"""The credit_testbed target end to end on its quick profile (a PLUMBING CHECK: 2-word filler, 2 warm-start steps,
2 RL steps, gates wide open), and a failing gate stopping the target with its measured value named."""

import csv
import json
import shutil

import pytest
from workflow_run import snakemake

from pgpo.config.schema import REPO

pytestmark = pytest.mark.slow
TESTBED_QUICK = str(REPO / "workflows/config/testbed_quick.yaml")


@pytest.fixture(scope="module")
def testbed_quick(tmp_path_factory):
    work = tmp_path_factory.mktemp("testbed_quick")
    proc = snakemake(work, "--cores", "2", "credit_testbed", "credit_testbed_core", "--configfile", TESTBED_QUICK,
                     timeout=1800)
    return work, work / "results/testbed_quick", proc.stdout + proc.stderr


def test_quick_credit_testbed_writes_records_the_paired_table_and_curves(testbed_quick):
    _, root, _ = testbed_quick
    tb = root / "testbed"
    gates = json.loads((tb / "random2/gates.json").read_text())
    assert gates["passed"] and {g["name"] for g in gates["gates"]} == {
        "filler_entropy", "answer_share", "format", "accuracy/digit", "accuracy/count"}
    for arm in ("dapo", "pgpo"):
        for seed in (0, 1):
            record = json.loads((tb / f"random2/records/{arm}-s{seed}.json").read_text())
            assert (record["arm"], record["seed"], record["variant"]) == (arm, seed, "random2")
            assert set(record["curves"]) == {"accuracy", "entropy_non_answer", "answer_share"}
            assert record["curves"]["accuracy"]["steps"] == [1, 2]
            assert {k: len(v["p"]) for k, v in record["forced"].items()} == {"digit": 3, "count": 3}
            assert all(0.0 < p < 1.0 for v in record["forced"].values() for p in v["p"])
    rows = list(csv.DictReader((root / "credit_testbed.csv").read_text().splitlines()))
    assert {(r["arm"], r["metric"]) for r in rows} == {("pgpo", m) for m in
                                                      ("forced_answer", "auc", "steps_to_gain", "filler_entropy")}
    forced = next(r for r in rows if r["metric"] == "forced_answer")
    assert forced["n_seeds"] == "2" and forced["n_questions"] == "6"
    assert float(forced["ci95_low"]) <= float(forced["diff"]) <= float(forced["ci95_high"])
    md = (root / "credit_testbed.md").read_text()
    assert "## random2" in md and "| pgpo | forced-answer accuracy (held-out) |" in md and "random2: passed" in md
    assert (root / "credit_testbed.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    core = list(csv.DictReader((root / "credit_testbed_core.csv").read_text().splitlines()))
    assert core == rows  # the quick profile's core is every run of its one variant: the same paired table


def test_quick_credit_testbed_is_in_mlflow(testbed_quick):
    _, root, _ = testbed_quick
    from mlflow.tracking import MlflowClient

    from pgpo.tracking.ingest import store

    client = MlflowClient(tracking_uri=store(root)[0])
    exp = client.get_experiment_by_name("testbed_quick/credit_testbed")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("kind") == "testbed"]
    assert len(children) == 4 and len(runs) == 5
    one = next(r for r in children if r.data.params["arm"] == "pgpo" and r.data.params["seed"] == "1")
    assert {"forced_mean", "auc", "filler_entropy", "rollout_all/accuracy"} <= set(one.data.metrics)
    parent = json.loads((root / "credit_testbed.tracking.json").read_text())["parent_run_id"]
    assert {"credit_testbed.md", "credit_testbed.csv", "credit_testbed.curves.png"} <= {
        a.path for a in client.list_artifacts(parent)}
    core = client.get_experiment_by_name("testbed_quick/credit_testbed_core")
    runs = client.search_runs([core.experiment_id])
    assert len(runs) == 6  # its own parent, the core's 4 runs and the claims
    claims = next(r for r in runs if r.data.tags.get("mlflow.runName") == "claims")
    measured = json.loads((root / "credit_testbed_claims.json").read_text())
    assert {k: v for k, v in claims.data.tags.items() if k.startswith("claim.")} == {
        f"claim.{c}": v["verdict"] for c, v in measured["claims"].items()}
    assert {"credit_testbed_claims.md", "credit_testbed_claims.json"} <= {
        a.path for a in client.list_artifacts(claims.info.run_id)}


def test_quick_credit_testbed_measures_the_claims_from_diagnostics_at_core_checkpoints(testbed_quick):
    _, root, _ = testbed_quick
    diag = root / "testbed/random2/diagnostic"
    warm = json.loads((diag / "warmstart/gradient_diagnostic.json").read_text())
    run = json.loads((diag / "pgpo-s1/gradient_diagnostic.json").read_text())
    assert warm["checkpoint"].endswith("random2/warmstart") and "no optimizer.pt" in warm["preconditioner"]
    assert run["checkpoint"].endswith("runs/pgpo-s1/checkpoint-2") and "optimizer.pt" in run["preconditioner"]
    assert "no optimizer.pt" not in run["preconditioner"]  # a training checkpoint: Adam's own second moments
    assert warm["methods"] == ["dapo", "pgpo"] and warm["groups"] == 4
    measured = json.loads((root / "credit_testbed_claims.json").read_text())
    assert set(measured["claims"]) == {"variance_reduction", "collapse_prevention", "sparse_dependency", "learning"}
    assert all(v["verdict"] in ("supported", "not supported", "inconclusive") for v in measured["claims"].values())
    ratio = [r for r in measured["rows"] if r["claim"] == "variance_reduction"]
    assert len(ratio) == 4 and sum(r["decisive"] for r in ratio) == 2  # 2 checkpoints x (Adam, raw)
    at_warm = next(r for r in ratio if "Adam" in r["measurement"] and "warmstart" in r["measurement"])
    assert at_warm["value"] == pytest.approx(warm["adam"]["noise_scale_ratio"]["dapo"]["pgpo"]["value"])
    assert measured["seeds"] == [0, 1]
    assert "| learning |" in (root / "credit_testbed_claims.md").read_text()


def started_rules(log: str) -> list[str]:
    """The rules of the jobs Snakemake started, in the order it started them (its log's job headers)."""
    return [line.split()[-1].rstrip(":") for line in log.splitlines()
            if line.startswith(("rule ", "localrule ")) and line.endswith(":")]


def test_started_rules_reads_the_job_headers():
    log = "[Thu]\nrule testbed_train:\n    input: x\n[Thu]\nlocalrule testbed_record:\nrule all:\nrule x: y\n"
    assert started_rules(log) == ["testbed_train", "testbed_record", "all"]


def test_every_training_starts_before_any_record_or_diagnostic(testbed_quick):
    """Trainings are the long jobs: started first, the cores stay full to the end (the core's first timed run
    started records as trainings finished, and its last training ran alone for 14 minutes)."""
    order = started_rules(testbed_quick[2])
    trains = [i for i, rule in enumerate(order) if rule == "testbed_train"]
    later = [i for i, rule in enumerate(order) if rule in ("testbed_record", "testbed_diagnostic")]
    assert len(trains) == 4 and len(later) == 6, order
    assert max(trains) < min(later), order


def test_a_failing_gate_stops_the_target_with_its_value(testbed_quick, tmp_path):
    """The finished quick run, copied, its gate marker and RL runs deleted, rerun with an impossible format gate:
    the gates job fails, no RL job starts, the log names the measured value (the copy keeps the data and warm start
    up to date, so only the gates run)."""
    work = tmp_path / "work"
    shutil.copytree(testbed_quick[0], work, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    variant = work / "results/testbed_quick/testbed/random2"
    (variant / "gates.json").unlink()
    shutil.rmtree(variant / "runs")
    proc = snakemake(work, "--cores", "2", "credit_testbed", "--configfile", TESTBED_QUICK, "--config",
                     "testbed={gates: {thresholds: {format: [1.5, null]}}}", timeout=900, check=False)
    assert proc.returncode != 0
    assert "rule testbed_warm_start:" not in proc.stdout + proc.stderr  # only the gates were out of date
    log = (work / "results/testbed_quick/logs/testbed/random2/gates.log").read_text()
    report = json.loads((variant / "gate_report.json").read_text())
    fmt = next(g for g in report["gates"] if g["name"] == "format")
    assert f"format = {fmt['value']:.4g} not in [1.5, +inf]" in log
    assert not (variant / "gates.json").exists()
    assert not (variant / "runs").exists()  # no RL job ran
