"""The stage records: one reader and one writer per file, one error policy, round trips that keep every field."""

import json

import pytest

from pgpo.records.stages import (
    RunRecord,
    append_metrics,
    find_run,
    read_eval_result,
    read_eval_summary,
    read_metrics,
    read_run,
    read_samples_meta,
    truncate_metrics,
    write_eval_summary,
    write_run,
    write_samples_meta,
)
from pgpo.util.errors import DataError, UserError


def test_a_run_record_round_trips_and_keeps_fields_it_does_not_know(tmp_path):
    run = RunRecord(method={"name": "pgpo"}, config={"seed": 1}, config_hash="h", global_steps=3,
                    inputs={"model_hash": "m"}, versions={"torch": "2"})
    write_run(tmp_path, run)
    back = read_run(tmp_path)
    assert back == run and back.finished
    raw = json.loads((tmp_path / "run.json").read_text())
    assert list(raw)[:4] == ["method", "uses_blind_view", "config", "config_hash"]  # run.json's own order
    assert "finished" not in raw and "extra" not in raw and raw["global_steps"] == 3
    (tmp_path / "run.json").write_text(json.dumps({**raw, "from_an_older_version": 7}))
    assert read_run(tmp_path).extra == {"from_an_older_version": 7}
    write_run(tmp_path, read_run(tmp_path))  # written back unchanged, the old field included
    assert json.loads((tmp_path / "run.json").read_text())["from_an_older_version"] == 7


def test_find_run_prefers_the_finished_record_and_says_which_it_read(tmp_path):
    assert find_run(tmp_path) is None
    write_run(tmp_path, RunRecord(method={"name": "dapo"}, config={}, config_hash="h0", finished=False))
    started = find_run(tmp_path)
    assert not started.finished and started.config_hash == "h0"
    assert list(json.loads((tmp_path / "run_config.json").read_text())) == ["method", "config", "config_hash"]
    write_run(tmp_path, RunRecord(method={"name": "dapo"}, config={}, config_hash="h1", global_steps=2))
    assert find_run(tmp_path).finished and find_run(tmp_path).config_hash == "h1"


def test_broken_records_are_one_line_user_errors_naming_the_file(tmp_path):
    (tmp_path / "run.json").write_text('{"method": {}}')
    with pytest.raises(DataError, match=r"run.json: missing field\(s\) \['config', 'config_hash'\]"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text('{"method": ')
    with pytest.raises(DataError, match=r"run.json: not JSON .*: a broken training run record"):
        read_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="x.json: missing evaluation result"):
        read_eval_result(tmp_path, "x")
    assert read_eval_result(tmp_path, "x", optional=True) is None
    assert issubclass(DataError, UserError)


def test_metrics_keep_the_last_row_of_a_step_and_only_a_live_read_skips_a_torn_last_line(tmp_path):
    for row in ({"step": 1, "r": 0.1}, {"step": 2, "r": 0.2}, {"step": 2, "r": 0.25}):
        append_metrics(tmp_path / "metrics.jsonl", row)
    assert [r["r"] for r in read_metrics(tmp_path)] == [0.1, 0.25]
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "r"')  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path, live=True)] == [1, 2]
    with pytest.raises(DataError, match=r"metrics.jsonl:4: not a JSON row"):
        read_metrics(tmp_path)
    truncate_metrics(tmp_path, 1)  # a resume from checkpoint-1 drops the later and the torn rows
    assert read_metrics(tmp_path) == [{"step": 1, "r": 0.1}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2"):  # a broken row in the middle is never skipped
        read_metrics(tmp_path, live=True)
    assert read_metrics(tmp_path / "elsewhere", optional=True) == []
    with pytest.raises(ValueError, match="needs its step"):
        append_metrics(tmp_path / "metrics.jsonl", {"r": 1})


def test_samples_meta_and_summaries(tmp_path):
    samples = tmp_path / "samples" / "tiny_count.jsonl"
    samples.parent.mkdir()
    meta = {"benchmark": "tiny_count", "checkpoint": "c", "checkpoint_hash": "h", "sampling": {"samples": 4},
            "samples_sha256": "s", "grading": {"abs_tol": 0.5}, "wall_seconds": 1.5}
    write_samples_meta(samples, meta)
    read = read_samples_meta(samples)
    assert read.k == 4 and read.grading == {"abs_tol": 0.5} and read.extra == {"wall_seconds": 1.5}
    assert list(read.as_dict().items()) == list(meta.items())  # as written, in its order (a result embeds it)
    table = write_eval_summary(tmp_path / "shard-a.json", {"x": {"avg_at_k": 0.25}, "y": {"avg_at_k": 0.75}})
    assert table["mean_avg_at_k"] == 0.5 and read_eval_summary(tmp_path / "shard-a.json") == {"x": 0.25, "y": 0.75}
    (tmp_path / "bad.json").write_text('{"benchmarks": [1]}')
    with pytest.raises(DataError, match="bad.json: not an evaluation summary"):
        read_eval_summary(tmp_path / "bad.json")
