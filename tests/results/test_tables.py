"""Tables: two-level bootstrap intervals over seeds and questions, the Avg column, provenance in the CSV."""

import csv
import json

import numpy as np
import pytest

from pgpo.results.tables import build_table, hierarchical_ci, write_table
from pgpo.workflow.report import stage_times


def fake_eval(run_dir, means_by_bench):
    run_dir.mkdir(parents=True)
    for bench, means in means_by_bench.items():
        (run_dir / f"{bench}.json").write_text(json.dumps({
            "per_question": [{"id": str(i), "mean": m} for i, m in enumerate(means)], "avg_at_k": float(np.mean(means)),
            "samples_sha256": "ab" * 32, "checkpoint_hash": "c0ffee", "k": 8}))
    return run_dir


def test_interval_covers_seed_spread_and_is_deterministic():
    rng = np.random.default_rng(0)
    same = [rng.random(100) for _ in range(2)]
    far = [same[0], same[1] + 0.3]
    lo1, hi1 = hierarchical_ci(same, 1000, 0)
    lo2, hi2 = hierarchical_ci(far, 1000, 0)
    assert hi2 - lo2 > hi1 - lo1  # seed disagreement widens the interval
    assert lo2 <= np.mean(same[0]) and hi2 >= np.mean(far[1]) - 0.05
    assert hierarchical_ci(far, 1000, 0) == (lo2, hi2)
    assert hierarchical_ci([np.full(5, 0.5)], 200, 0) == (0.5, 0.5)


def test_table_cells_avg_and_csv_provenance(tmp_path):
    a0 = fake_eval(tmp_path / "grpo-s0", {"x": [1, 0, 1, 1], "y": [0, 0, 0, 1], "c": [1, 1]})
    a1 = fake_eval(tmp_path / "grpo-s1", {"x": [1, 1, 1, 1], "y": [0, 0, 1, 1], "c": [0, 0]})
    base = fake_eval(tmp_path / "base", {"x": [0, 0, 0, 1], "y": [0, 0, 0, 0], "c": [1, 0]})
    table = build_table({"base": [base], "grpo": [a0, a1]}, ["x", "y", "c"], ["x", "y"],
                        {str(a0): "run0", str(a1): "run1"}, bootstrap=500)
    grpo = table["rows"]["grpo"]
    assert grpo["x"]["mean"] == pytest.approx(0.875) and grpo["x"]["per_seed"] == [0.75, 1.0]
    assert grpo["avg"]["mean"] == pytest.approx(np.mean([(0.75 + 0.25) / 2, (1.0 + 0.5) / 2]))  # c not averaged
    assert table["rows"]["base"]["avg"]["n_seeds"] == 1
    md, csv_path, png = write_table(table, tmp_path / "t1", "test", {"x": "X"})
    assert "| grpo | 87.5 [" in md.read_text() and "| row | X | y | c | avg |" in md.read_text()
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    cell = next(r for r in rows if r["row"] == "grpo" and r["column"] == "X")
    assert cell["mlflow_run_ids"] == "run0;run1" and cell["n_seeds"] == "2"
    assert float(cell["ci95_low"]) <= 0.875 <= float(cell["ci95_high"])
    assert png.stat().st_size > 1000


def test_missing_result_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="x.json: missing evaluation result"):
        build_table({"r": [tmp_path]}, ["x"], [])


def test_stage_times(tmp_path):
    (tmp_path / "train").mkdir()
    for name, s in (("a", 3.0), ("b", 5.0)):
        (tmp_path / "train" / f"{name}.tsv").write_text(f"s\th:m:s\n{s}\t0:00:0{int(s)}\n")
    text = stage_times(tmp_path, 9.0)
    assert "train" in text and "2 job(s)" in text and "sum      8.0 s" in text and "9.0 s wall" in text


def test_pass_and_maj_views_average_their_own_per_question_scores(tmp_path):
    from pgpo.results.tables import views_markdown

    run = tmp_path / "r-s0"
    run.mkdir()
    # 3 questions x 4 samples: pass@4 = any right, maj@4 = the majority answer right (given here per question)
    per_q = [{"id": "a", "mean": 0.25, "pass_at_k": 1.0, "maj_at_k": 0.0},
             {"id": "b", "mean": 0.75, "pass_at_k": 1.0, "maj_at_k": 1.0},
             {"id": "c", "mean": 0.0, "pass_at_k": 0.0, "maj_at_k": 0.0}]
    (run / "x.json").write_text(json.dumps({"per_question": per_q, "avg_at_k": 1 / 3, "k": 4}))
    tables = {v: build_table({"m": [run]}, ["x"], ["x"], view=v, bootstrap=200) for v in ("mean", "pass_at_k",
                                                                                           "maj_at_k")}
    assert [tables[v]["rows"]["m"]["avg"]["mean"] for v in tables] == pytest.approx([1 / 3, 2 / 3, 1 / 3])
    text = views_markdown({v: tables[v] for v in ("pass_at_k", "maj_at_k")}, {"x": "X"})
    assert "| m | 66.7 [" in text and "pass@k" in text and "maj@k" in text and "| row | X | avg |" in text
    old = fake_eval(tmp_path / "old", {"x": [1, 0]})  # scored before pass@k existed: no view, not a crash
    assert build_table({"m": [old]}, ["x"], ["x"], view="pass_at_k") is None


def test_the_mean_is_one_definition_the_shipped_profiles_follow():
    from pgpo.config.schema import REPO
    from pgpo.evaluation.benchmarks import headline, headline_mean
    from pgpo.workflow.plan import benchmarks, load_profile

    for name in ("tiny", "quick", "paper", "paper_qwen3_vl", "paper_8x24gb", "paper_1x80gb_lora"):
        config = load_profile(REPO / "workflows/config" / f"{name}.yaml")
        assert config["average_over"] == headline(benchmarks(config)), name
    assert "tiny_control" not in headline(["tiny_count", "tiny_control"]) == ["tiny_count"]
    assert headline_mean({"tiny_count": 0.5, "tiny_control": 1.0, "my_own": 0.0}) == 0.25
    assert headline_mean({"tiny_control": 1.0}) is None


def test_an_evaluation_summary_averages_the_headline_benchmarks(tmp_path):
    from pgpo.records.stages import write_eval_summary

    table = write_eval_summary(tmp_path / "s.json", {"tiny_count": {"avg_at_k": 0.5},
                                                     "tiny_control": {"avg_at_k": 1.0}}, ["tiny_count"])
    assert table["mean_avg_at_k"] == 0.5 and table["mean_over"] == ["tiny_count"]
    assert json.loads((tmp_path / "s.json").read_text())["mean_avg_at_k"] == 0.5
