"""Figures: training curves aggregated over seeds, the sweep heatmap's grid and off-grid rows, the warm-start panels,
byte-identical files, and `pgpo table` writing exactly the figures its spec declares."""

import json

import numpy as np
import pytest

from pgpo.records.stages import RunRecord, read_metrics, write_run
from pgpo.results.figures import (
    curve_keys,
    find_sweep,
    plot_curves,
    plot_sweep,
    plot_warmstart,
    row_methods,
    training_curves,
    warmstart_panels,
)


def write_metrics(run_dir, rows):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def two_methods(tmp_path):
    """grpo and pgpo, 2 seeds each; seed 1 of grpo stops a step early; only pgpo logs dependency statistics."""
    runs = {
        "tiny/grpo-s0": [{"step": 1, "reward": 0.1, "completions/mean_length": 10}, {"step": 2, "reward": 0.3},
                         {"step": 3, "reward": 0.5}],
        "tiny/grpo-s1": [{"step": 1, "reward": 0.3, "completions/mean_length": 14}, {"step": 2, "reward": 0.5}],
        "tiny/pgpo-s0": [{"step": 1, "reward": 0.0, "dependency/mean": 0.2, "dependency/max": 0.9, "weights/max": 3},
                         {"step": 2, "reward": float("nan"), "dependency/mean": 0.4}],
        "tiny/pgpo-s1": [{"step": 1, "reward": 1.0, "dependency/mean": 0.6, "dependency/max": 0.7, "weights/max": 2},
                         {"step": 2, "reward": 0.8, "dependency/mean": 0.8}],
    }
    metrics = {name: read_metrics(write_metrics(tmp_path / name, rows)) for name, rows in runs.items()}
    labels = {name: {"size": "tiny", "method": name.split("/")[1].split("-")[0], "seed": int(name[-1])}
              for name in runs}
    return metrics, labels


def test_curves_are_mean_and_range_over_seeds(tmp_path):
    metrics, labels = two_methods(tmp_path)
    keys = curve_keys(metrics)
    # generic keys that were logged, then the dependency namespace; weights/* is not a curve panel
    assert keys == ["reward", "completions/mean_length", "dependency/max", "dependency/mean"]
    curves = training_curves(metrics, labels, keys)
    assert list(curves) == ["grpo", "pgpo"]  # rows named by the label field that varies, seeds merged
    reward = curves["grpo"]["reward"]
    assert reward.steps.tolist() == [1, 2, 3]
    assert reward.mean == pytest.approx([0.2, 0.4, 0.5])
    assert (reward.low.tolist(), reward.high.tolist()) == ([0.1, 0.3, 0.5], [0.3, 0.5, 0.5])
    assert reward.n_seeds.tolist() == [2, 2, 1]  # step 3: only seed 0 reached it
    # a NaN reward is left out of the mean, and the step says one seed contributed
    assert curves["pgpo"]["reward"].mean == pytest.approx([0.5, 0.8])
    assert curves["pgpo"]["reward"].n_seeds.tolist() == [2, 1]
    assert curves["pgpo"]["dependency/mean"].mean == pytest.approx([0.4, 0.6])
    assert "dependency/mean" not in curves["grpo"] and curves["grpo"]["completions/mean_length"].mean == [12.0]


def test_curve_figure_is_deterministic_and_follows_the_data(tmp_path):
    metrics, labels = two_methods(tmp_path)
    keys = curve_keys(metrics)
    a = plot_curves(training_curves(metrics, labels, keys), keys, tmp_path / "a.png", "T")
    b = plot_curves(training_curves(metrics, labels, keys), keys, tmp_path / "b.png", "T")
    assert a.read_bytes() == b.read_bytes() and a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics["tiny/grpo-s0"][0]["reward"] = 0.9
    c = plot_curves(training_curves(metrics, labels, keys), keys, tmp_path / "c.png", "T")
    assert c.read_bytes() != a.read_bytes()


def test_a_bad_metrics_row_names_file_and_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "reward": 0}\n{"reward": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: a metrics row needs an integer 'step'"):
        read_metrics(run)
    with pytest.raises(FileNotFoundError, match="missing training metrics"):
        read_metrics(tmp_path / "nowhere")


def sweep_points():
    """A 2x2 grid over p.a x p.b at p.flag=True, plus one row off each way: another flag, an a without partners."""
    def point(a, b, flag):
        return {"name": "m", "p.a": a, "p.b": b, "p.eps": 1e-6, "p.flag": flag}

    # "noflag" comes before the grid row at its (a, b): the grid must still take the one at the common flag
    points = {"a2-b1": point(0.2, 1.0, True), "a2-b2": point(0.2, 2.0, True), "a4-b1": point(0.4, 1.0, True),
              "noflag": point(0.4, 2.0, False), "a4-b2": point(0.4, 2.0, True), "a10": point(1.0, 2.0, True),
              "base": None}
    means = {"a2-b1": 0.1, "a2-b2": 0.2, "a4-b1": 0.3, "a4-b2": 0.4, "noflag": 0.5, "a10": 0.6, "base": 0.0}
    values = {k: {"mean": m, "ci95": [m - 0.05, m + 0.05]} for k, m in means.items()}
    return points, values


def test_sweep_grid_and_off_grid_rows():
    sweep = find_sweep(*sweep_points())
    assert (sweep.x_key, sweep.y_key) == ("p.a", "p.b")  # x: the parameter with more distinct values
    assert (sweep.x_values, sweep.y_values) == ([0.2, 0.4], [1.0, 2.0]) and sweep.reference == {"p.flag": True}
    np.testing.assert_allclose(sweep.matrix, [[0.1, 0.3], [0.2, 0.4]])  # rows: y values, columns: x values
    np.testing.assert_allclose(sweep.high - sweep.matrix, np.full((2, 2), 0.05))
    assert sweep.cells[(0.4, 2.0)] == "a4-b2"
    assert sweep.off_grid == [("noflag", {"p.flag": False}), ("a10", {"p.a": 1.0})]
    assert sweep.off_values == [pytest.approx((0.5, 0.45, 0.55)), pytest.approx((0.6, 0.55, 0.65))]


def test_sweep_figure_is_deterministic(tmp_path):
    a = plot_sweep(find_sweep(*sweep_points()), tmp_path / "a.png", "ablation")
    b = plot_sweep(find_sweep(*sweep_points()), tmp_path / "b.png", "ablation")
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 5000


def test_a_sweep_needs_two_numeric_parameters():
    points = {"x": {"name": "m", "p.a": 0.1, "p.flag": True}, "y": {"name": "m", "p.a": 0.2, "p.flag": False}}
    values = {k: {"mean": 0.5, "ci95": [0.4, 0.6]} for k in points}
    with pytest.raises(ValueError, match=r"two numeric parameters that vary.*\['p.a', 'p.flag'\]"):
        find_sweep(points, values)


def fake_evaluated_training(tmp_path, name, method, benches=("x", "y"), mean=0.5):
    """A training run (run.json + metrics.jsonl) and its evaluation (per-benchmark results + samples meta)."""
    run = write_metrics(tmp_path / "runs" / name, [{"step": 1, "reward": mean}, {"step": 2, "reward": mean + 0.1}])
    write_run(run, RunRecord(method=method, config={}, config_hash="h", global_steps=2))
    ev = tmp_path / "eval" / name
    (ev / "samples").mkdir(parents=True)
    (ev / "samples/x.meta.json").write_text(json.dumps({"checkpoint": str(run / "final")}))
    for b in benches:
        (ev / f"{b}.json").write_text(json.dumps({
            "per_question": [{"id": str(i), "mean": m} for i, m in enumerate([mean, mean, 1 - mean])],
            "avg_at_k": mean, "samples_sha256": "ab" * 32, "checkpoint_hash": "c0ffee", "k": 2}))
    return run, ev


def test_row_methods_read_the_run_json_of_the_trainings_a_row_came_from(tmp_path):
    run, _ = fake_evaluated_training(tmp_path, "m-s0", {"name": "m", "shaper": {"params": {"k": 0.3}}})
    run1, _ = fake_evaluated_training(tmp_path, "m-s1", {"name": "m", "shaper": {"params": {"k": 0.4}}})
    assert row_methods({"m": [run], "base": [None]}) == {"m": {"name": "m", "shaper.params.k": 0.3}, "base": None}
    with pytest.raises(ValueError, match="row 'mixed': its seeds were trained with different method records"):
        row_methods({"mixed": [run, run1]})


def test_warmstart_panels_and_figure(tmp_path):
    record = {"config": {"steps": 400, "lr": 0.002}, "curve": [
        {"step": 200, "seconds": 1.0, "loss": 2.0, "greedy_accuracy": {"count": 0.25, "all": 0.5}},
        {"step": 400, "seconds": 2.0, "loss": 1.0, "greedy_accuracy": {"count": 0.75, "all": 0.875}}]}
    panels = warmstart_panels(record)
    assert panels == {"loss": {"loss": ([200, 400], [2.0, 1.0])},
                      "greedy_accuracy": {"count": ([200, 400], [0.25, 0.75]), "all": ([200, 400], [0.5, 0.875])}}
    a, b = plot_warmstart(record, tmp_path / "a.png"), plot_warmstart(record, tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="empty 'curve'"):
        warmstart_panels({"curve": []})


def test_pgpo_table_writes_the_declared_figures_and_no_bars_for_a_sweep(tmp_path, capsys):
    from pgpo.cli import main

    rows, trainings, labels, row_runs = {}, {}, {}, {}
    for i, (a, b) in enumerate([(0.2, 1.0), (0.2, 2.0), (0.4, 1.0), (0.4, 2.0), (0.9, 2.0)]):
        name = f"a{a}-b{b}"
        run, ev = fake_evaluated_training(tmp_path, name, {"name": "m", "params": {"a": a, "b": b}}, mean=0.1 * i)
        rows[name], trainings[name], labels[name] = [str(ev)], str(run), {"method": "m", "seed": 0, "variant": name}
        row_runs[name] = [str(run)]
    out = tmp_path / "out/abl"
    figures = {"curves": str(out) + ".curves.png", "heatmap": str(out) + ".heatmap.png"}
    spec = {"root": str(tmp_path), "target": "abl", "title": "abl", "rows": rows, "trainings": trainings,
            "labels": labels, "warmstart": None, "benchmarks": ["x", "y"], "average_over": ["x", "y"],
            "tracking": None, "out": str(out), "figures": figures, "row_runs": row_runs}
    assert main(["table", "--spec", json.dumps(spec)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["abl.csv", "abl.curves.png", "abl.diff.csv",
                                                            "abl.diff.json", "abl.diff.md", "abl.heatmap.png",
                                                            "abl.html", "abl.md"]
    page = (out.parent / "abl.html").read_text()
    assert "<th style='text-align:left;padding:2px 8px'>a0.4-b2.0</th>" in page and "avg = mean over x, y" in page
    # asking for the warm-start figure without a record is a one-line error, not a silent skip
    spec["figures"]["warmstart"] = str(tmp_path / "out/warmstart.png")
    capsys.readouterr()
    assert main(["table", "--spec", json.dumps(spec)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pgpo table: error: table spec asks for the warm-start figure but names no warm-start record ('warmstart')"]
    # rows that are no sweep: the heatmap's error names the target and what varies
    spec["figures"] = {"heatmap": figures["heatmap"]}
    spec["rows"] = {k: v for k, v in rows.items() if k.endswith("b2.0")}
    assert main(["table", "--spec", json.dumps(spec)]) == 2
    assert "pgpo table: error: abl heatmap: a heatmap needs two numeric parameters that vary across the rows; " \
           "varying: ['params.a']" in capsys.readouterr().err
