"""The results layout: the paths the planner, the rules, status and tracking share, from one place."""

from pathlib import Path

from pgpo.records.layout import Layout


def test_paths_and_snakemake_patterns_come_from_the_same_methods():
    lay = Layout("results/tiny")
    assert lay.run("tiny", "pgpo", 0) == "results/tiny/runs/tiny/pgpo-s0"
    assert lay.run("{size}", "{method}", "{seed}") == "results/tiny/runs/{size}/{method}-s{seed}"
    assert lay.ablation_run("tiny", "tau0.4", 1) == "results/tiny/ablation/tiny/tau0.4/s1"
    assert lay.eval("tiny", "ablation/tau0.4/s1") == "results/tiny/eval/tiny/ablation/tau0.4/s1"
    assert lay.trained_run("tiny", "ablation/tau0.4/s1") == lay.ablation_run("tiny", "tau0.4", 1)
    assert lay.trained_run("tiny", "pgpo-s0") == lay.run("tiny", "pgpo", 0)
    assert lay.eval_shard("tiny", "base", "all") == "results/tiny/eval/tiny/base/shard-all.json"
    assert lay.train_log("tiny", "pgpo", 0) == "results/tiny/logs/train/tiny/pgpo-s0.log"
    assert lay.log_of_run(lay.run("tiny", "pgpo", 0)) == Path(lay.train_log("tiny", "pgpo", 0))
    assert lay.log_of_run(lay.ablation_run("tiny", "v", 2)) == Path(lay.ablation_log("tiny", "v", 2))
    assert lay.target("table1") == "results/tiny/table1" and lay.target("table1", "diff.md").endswith("table1.diff.md")
    assert Layout(Path("r")).root == "r"


def test_what_is_on_disk_and_the_layout_a_run_lies_in(tmp_path):
    lay = Layout(tmp_path)
    for rel in ("runs/tiny/a-s0/run.json", "runs/tiny/b-s0/metrics.jsonl", "ablation/tiny/v/s0/run_config.json",
                "runs/tiny/a-s0/checkpoint-2/metrics.jsonl", "eval/tiny/a-s0/samples/x.jsonl",
                "logs/eval/tiny/base/all.log"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in lay.training_runs()] == [
        "ablation/tiny/v/s0", "runs/tiny/a-s0", "runs/tiny/b-s0"]  # not the checkpoint's copy
    assert [(d.relative_to(tmp_path).as_posix(), shard) for d, shard, _ in lay.evaluations()] == [
        ("eval/tiny/base", "all"), ("eval/tiny/a-s0", None)]
    assert Layout.of_run(tmp_path / "runs/tiny/a-s0").root == str(tmp_path.resolve())
    assert Layout.of_run(tmp_path / "elsewhere/run") is None
