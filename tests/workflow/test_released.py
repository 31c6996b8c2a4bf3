"""Released checkpoints as reference rows (issue 24, item 4): a profile's `released:` entries are evaluated under
this harness's protocol and stand as rows beside each size's base row, with no training job.

Executed offline: a local snapshot stands in for a hub checkpoint (a copy of the quick profile's base model), the
workflow runs in a copy of the session's finished quick tree, and the released row must sample exactly what the
base row sampled (same weights, same protocol): what separates an evaluation gap from a training gap."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from workflow_run import PAPER, QUICK, copy_tree, snakemake

from pgpo.config.schema import ConfigError
from pgpo.workflow import plan

REPO = Path(__file__).parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
HUB = {"name": "papo_g", "model": "PAPOGalaxy/PAPO-G-Qwen2.5-VL-7B", "revision": SHA, "source": "PAPO authors"}


def test_released_rows_are_planned_beside_the_base_row():
    cfg = plan.load_profile(QUICK, {"released": {"tiny": [{"name": "stand_in", "model": "{root}/model/copy"}]}})
    rows = plan.table_rows(cfg, "table1", REPO)
    assert list(rows)[:3] == ["base", "stand_in (released)", "dapo"]
    assert rows["stand_in (released)"] == ["results/quick/eval/tiny/released-stand_in"]
    assert plan.row_trainings(cfg, "table1", REPO)["stand_in (released)"] == [None]  # nothing trained
    assert plan.checkpoint_dir(cfg, "tiny", "released-stand_in") == "results/quick/model/copy"
    assert plan.checkpoint_marker(cfg, "tiny", "released-stand_in") == ["results/quick/model/copy/config.json"]
    assert "results/quick/eval/tiny/released-stand_in/shard-tiny.json" in plan.target_inputs(cfg, "table1", REPO)
    reference, _ = plan.reference_rows(cfg, "table1", REPO)
    assert reference["stand_in (released)"] == "dapo"  # compared with the reference like every row
    assert "released-stand_in" not in json.dumps(plan.trainings(cfg, "table1", REPO), default=str)


def test_a_hub_checkpoint_is_evaluated_at_its_pinned_commit_in_the_paper_dag(tmp_path):
    profile = tmp_path / "paper_released.yaml"
    profile.write_text(yaml.safe_dump({"extends": PAPER, "profile": "paper_released", "released": {"7b": [HUB]}}))
    cfg = plan.load_profile(profile)
    assert plan.checkpoint_marker(cfg, "7b", "released-papo_g") == []  # fetched by the job, nothing to wait for
    assert plan.checkpoint_revision(cfg, "7b", "released-papo_g") == SHA
    dry = snakemake(tmp_path, "-n", "-p", "reproduce_table1", "--configfile", str(profile))
    commands = [line for line in dry.stdout.splitlines() if "--out results/paper/eval/7b/released-papo_g" in line]
    assert len(commands) == 8  # one evaluation job per shard, no training job
    assert all(f"--checkpoint {HUB['model']} --revision {SHA}" in c for c in commands)
    # the jobs run in the workflow's directory (here not the checkout): repository files in launch are absolute
    trains = [line for line in dry.stdout.splitlines() if " train --method " in line]
    assert trains and all(f"--config_file {REPO / 'workflows/config/accelerate/zero3.yaml'} " in c for c in trains)


@pytest.mark.parametrize("released, error", [
    ({"huge": [{"name": "x", "model": "/m"}]}, "released.huge: not a size of this profile"),
    ({"tiny": [{"name": "x", "model": "/m"}, {"name": "x", "model": "/n"}]}, "a name repeats"),
    ({"tiny": [{"name": "x", "model": "Org/model"}]}, "needs `revision:`"),
])
def test_bad_released_entries_are_refused_at_the_dry_run(released, error):
    with pytest.raises(ConfigError, match=error):
        plan.load_profile(QUICK, {"released": released})


@pytest.mark.slow
def test_a_released_snapshot_is_evaluated_as_a_row_without_training(finished, tmp_path):
    work, _ = finished
    copy_tree(work, tmp_path)
    root = tmp_path / "results/quick"
    shutil.copytree(root / "model/warmstart", root / "model/stand_in")  # the snapshot: the base model's files
    (root / "model/stand_in/warmstart.json").unlink()
    snakemake(tmp_path, "--touch", "--cores", "1", "reproduce_table1", "--configfile", QUICK)  # the copy's mtimes
    profile = tmp_path / "released.yaml"
    profile.write_text(yaml.safe_dump({"extends": QUICK, "profile": "quick", "released": {"tiny": [
        {"name": "stand_in", "model": "{root}/model/stand_in", "source": "the base model's files"}]}}))
    proc = snakemake(tmp_path, "--cores", "2", "reproduce_table1", "--configfile", str(profile), timeout=1200)
    ran = proc.stdout + proc.stderr
    stats = ran[ran.index("Job stats:"):].split("total")[0]
    jobs = dict(line.split() for line in stats.splitlines()[3:] if line.strip())
    assert jobs == {"evaluate": "1", "track_table1": "1", "table_table1": "1", "reproduce_table1": "1"}, stats
    table = (root / "table1.csv").read_text()
    assert "stand_in (released)" in table
    base, released = root / "eval/tiny/base/samples", root / "eval/tiny/released-stand_in/samples"
    suites = sorted(p.name for p in base.glob("*.jsonl"))
    assert suites and suites == sorted(p.name for p in released.glob("*.jsonl"))
    for name in suites:
        a = [json.loads(line)["responses"] for line in (base / name).read_text().splitlines()]
        b = [json.loads(line)["responses"] for line in (released / name).read_text().splitlines()]
        assert a == b, name  # same weights, same protocol: the same samples, response for response
    tracked = json.loads((root / "tracking/table1.json").read_text())
    assert "released-stand_in" in json.dumps(tracked)
