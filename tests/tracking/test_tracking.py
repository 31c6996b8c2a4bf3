"""MLflow as its users see it, on real sqlite stores: model-training experiments, real run times, system tags,
dataset inputs with digests, figures as artifacts; a method unknown to the tracking code (a throwaway shaper with
a new parameter and a new statistic, trained for real) shows up whole; live logging to MLFLOW_TRACKING_URI is
completed in place by the ingestion, never duplicated."""

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgpo.config.schema import BASELINES_DIR, REPO, load_method, load_train_config

GAIN = 2.5  # the throwaway shaper's new parameter, and the value of its new statistic


@dataclass
class GainParams:
    """A parameter no tracking code has heard of."""

    gain: float = 1.0
    """Multiplies the sequence advantage."""


@pytest.fixture(scope="module", autouse=True)
def throwaway_shaper():
    """The throwaway shaper, registered for this module only (other tests list every registered shaper)."""
    from pgpo.methods.shaping import SHAPERS, ShapingResult

    @SHAPERS.register("throwaway_gain", params=GainParams, per_response=True)
    def throwaway_gain(batch, params):
        mask = batch.completion_mask.to(batch.advantages.dtype)
        return ShapingResult(params.gain * batch.advantages[:, None] * mask, {"gain_seen": params.gain})

    yield
    SHAPERS._entries.pop("throwaway_gain")


def _stat(rows) -> str:
    """The throwaway statistic's name as the trainer logged it (the trainer decides its namespace)."""
    return next(k for k in rows[0] if k.endswith("gain_seen"))


def _method(tmp_path):
    """A method YAML on disk, extending grpo with the throwaway shaper."""
    shutil.copy(BASELINES_DIR / "grpo.yaml", tmp_path / "grpo.yaml")
    path = tmp_path / "throwaway.yaml"
    path.write_text(f"extends: grpo\nshaper: {{name: throwaway_gain, params: {{gain: {GAIN}}}}}\n")
    return load_method(path)


def _train(tiny_dir, tiny_data, tmp_path, out):
    from pgpo.training.run import train

    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
        "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 4},
        "micro_batch": 4, "max_steps": 1, "save_steps": 1, "save_total_limit": 1, "samples": {"every": 1}})
    return train(cfg, _method(tmp_path), out)


def _sample_table(client, run_id, step=1) -> dict:
    """The samples table of `step` as MLflow stores it (a JSON artifact in pandas' split layout)."""
    from mlflow.artifacts import download_artifacts

    assert f"samples/step_{step:06d}.json" in [f.path for f in client.list_artifacts(run_id, "samples")]
    path = download_artifacts(run_id=run_id, artifact_path=f"samples/step_{step:06d}.json",
                              tracking_uri=client._tracking_client.tracking_uri)
    table = json.loads(Path(path).read_text())
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def _chart_sections(metric_keys) -> list[str]:
    """The order of MLflow 3.17's chart sections for these metrics: the name before the last "/", sorted, the
    unprefixed ones ("Model metrics") last (its UI bundle's extractChartSectionName and section sort)."""
    named = sorted({k.rsplit("/", 1)[0] for k in metric_keys if "/" in k})
    return named + (["Model metrics"] if any("/" not in k for k in metric_keys) else [])


def _runs(client, key):
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=f"tags.`pgpo.key` = '{key}'")


@pytest.fixture(scope="module")
def trained(tiny_dir, tiny_data, tmp_path_factory):
    """One real 1-step training of the throwaway method, in the workflow's layout, with no tracking server and
    live logging off (PGPO_LIVE_MLFLOW=0): the ingestion on its own."""
    import os

    tmp = tmp_path_factory.mktemp("throwaway")
    root = tmp / "results" / "prof"
    out = root / "runs" / "tiny" / "throwaway-s0"
    os.environ["PGPO_LIVE_MLFLOW"] = "0"
    try:
        run = _train(tiny_dir, tiny_data, tmp, out)
    finally:
        del os.environ["PGPO_LIVE_MLFLOW"]
    return root, out, run


@pytest.mark.slow
def test_a_new_method_parameter_and_statistic_reach_mlflow_with_times_tags_and_inputs(trained, monkeypatch):
    from pgpo.util.provenance import code_version
    from pgpo.tracking.ingest import client_for, ingest, store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root, out, run = trained
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0][_stat(rows)] == GAIN and rows[0]["timestamp_ms"] >= run.started_at
    result = ingest(root, "table1", {"tiny/throwaway-s0": out}, {}, [], {"tiny/throwaway-s0": {"size": "tiny"}})
    client = client_for(store(root)[0])
    exp = client.get_experiment(result["experiment_id"])
    assert exp.name == "prof/table1" and exp.tags["mlflow.experimentKind"] == "custom_model_development"
    mine = client.get_run(result["runs"][str(out)])
    logged = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    table = _sample_table(client, mine.info.run_id)
    assert [(r["prompt_id"], r["response"], r["reward"]) for r in table] == [
        (s["prompt_id"], s["response"], s["reward"]) for s in logged] and len(table) == 2
    assert table[0]["weighted"].split(" ")[0].startswith(logged[0]["tokens"][0])
    training = client.get_experiment(mine.info.experiment_id)  # every training run in one experiment
    assert training.name == "prof/training" and training.tags["mlflow.experimentKind"] == "custom_model_development"
    assert json.loads(training.tags["mlflow.sharedViewState.pgpo"])["groupBy"] == "param.average.method"
    assert "pgpo.live" not in mine.data.tags
    params, tags = mine.data.params, mine.data.tags
    assert params["shaper.name"] == "throwaway_gain" and params["shaper.params.gain"] == str(GAIN)
    assert params["method"] == "throwaway" and params["loss.type"] == "grpo" and params["size"] == "tiny"
    assert params["config.rollout.num_generations"] == "2" and params["blind_view"] == "-"
    history = client.get_metric_history(mine.info.run_id, _stat(rows))
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, GAIN, rows[0]["timestamp_ms"])]
    assert {"reward", "rewards/accuracy_reward/mean", "step_time", "entropy"} <= set(mine.data.metrics)
    # the headline statistics form the first section of MLflow's chart view, equal to the originals
    assert _chart_sections(mine.data.metrics)[0] == "Headline" and _chart_sections(mine.data.metrics)[-1] == "Model metrics"
    assert {k for k in mine.data.metrics if k.startswith("Headline/")} >= {"Headline/reward", "Headline/entropy",
                                                                         "Headline/rewards.accuracy_reward.mean"}
    assert mine.data.metrics["Headline/reward"] == mine.data.metrics["reward"]
    assert "timestamp_ms" not in mine.data.metrics and "step" not in mine.data.metrics
    assert (mine.info.start_time, mine.info.end_time) == (run.started_at, run.finished_at)
    assert mine.info.end_time - mine.info.start_time >= 1000 * run.wall_seconds - 1000  # not the ingestion's
    assert tags["mlflow.source.name"] == "pgpo train" and tags["mlflow.user"] == run.user
    assert tags["mlflow.source.git.commit"] == code_version()[:40] and tags["kind"] == "train"
    assert tags["pgpo.key"] == "train/runs/tiny/throwaway-s0" and "mlflow.parentRunId" not in tags
    (data,) = mine.inputs.dataset_inputs
    assert data.dataset.digest == run.inputs["train_split_sha256"][:16] and data.dataset.name == "train"
    assert {t.key: t.value for t in data.tags} == {"mlflow.data.context": "training"}
    assert json.loads(data.dataset.profile)["sha256"] == run.inputs["train_split_sha256"]

    # an older ingestion keyed runs by the workflow's name: such a run is replaced, the current one left alone
    client.create_run(exp.experiment_id, tags={"pgpo.key": "train/tiny/throwaway-s0", "pgpo.source_hash": "old"})
    again = ingest(root, "table1", {"tiny/throwaway-s0": out}, {}, [])
    assert again["runs"] == result["runs"] and len(client.search_runs([exp.experiment_id])) == 1  # the parent
    assert client.get_run(result["runs"][str(out)]).info.end_time == run.finished_at
    # a changed source replaces the run: still one run under the key
    (out / "run.json").write_text(json.dumps({**json.loads((out / "run.json").read_text()), "note": "edited"}, indent=2))
    changed = ingest(root, "table1", {"tiny/throwaway-s0": out}, {}, [])
    assert changed["runs"][str(out)] != result["runs"][str(out)]
    assert [r.info.run_id for r in _runs(client, "train/runs/tiny/throwaway-s0")] == [changed["runs"][str(out)]]


@pytest.mark.slow
def test_a_workflow_run_logs_live_to_its_profile_store_with_no_server(tiny_dir, tiny_data, tmp_path, monkeypatch):
    from pgpo.tracking.ingest import client_for, ingest, store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "results" / "lab"
    out = root / "runs" / "tiny" / "throwaway-s1"
    _train(tiny_dir, tiny_data, tmp_path, out)
    client = client_for(store(root)[0])
    (live,) = _runs(client, "train/runs/tiny/throwaway-s1")  # written by the training job, before any ingestion
    assert client.get_experiment(live.info.experiment_id).name == "lab/training"
    assert live.data.tags["pgpo.live"] == "true" and live.info.status == "FINISHED"
    stat = _stat([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])
    assert live.data.metrics[stat] == GAIN and len(_sample_table(client, live.info.run_id)) == 2
    assert _chart_sections(live.data.metrics)[0] == "Headline" and "Headline/step_time" in live.data.metrics
    result = ingest(root, "table1", {"tiny/throwaway-s1": out}, {}, [])
    assert result["runs"][str(out)] == live.info.run_id and len(_runs(client, "train/runs/tiny/throwaway-s1")) == 1
    assert len(_sample_table(client, live.info.run_id)) == 2  # not appended twice


@pytest.mark.slow
def test_a_resumed_live_run_logs_each_step_once(tiny_dir, tiny_data, tmp_path, monkeypatch):
    """Killed after step 2 was logged but before its checkpoint: the resume trains step 2 again, and MLflow keeps
    one point per step and one samples table per step (the resumed run equals the uninterrupted one)."""
    from pgpo.tracking.ingest import client_for, store
    from pgpo.training.run import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "results" / "lab" / "runs" / "tiny" / "throwaway-s2"
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
        "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 4},
        "micro_batch": 4, "max_steps": 2, "save_steps": 1, "save_total_limit": 2, "samples": {"every": 1}})
    train(cfg, _method(tmp_path), out)
    for gone in ("run.json", "final", "checkpoint-2"):  # what a kill between step 2's log and its save leaves
        shutil.rmtree(out / gone) if (out / gone).is_dir() else (out / gone).unlink()
    train(cfg, _method(tmp_path), out)
    client = client_for(store(tmp_path / "results" / "lab")[0])
    (live,) = _runs(client, "train/runs/tiny/throwaway-s2")
    assert [m.step for m in client.get_metric_history(live.info.run_id, "loss")] == [1, 2]
    assert [f.path for f in client.list_artifacts(live.info.run_id, "samples")] == [
        "samples/step_000001.json", "samples/step_000002.json"]
    assert len(_sample_table(client, live.info.run_id, step=2)) == 2 and live.info.status == "FINISHED"


@pytest.mark.slow
def test_live_logging_is_completed_in_place_by_the_ingestion(tiny_dir, tiny_data, tmp_path, monkeypatch):
    from pgpo.tracking.ingest import client_for, ingest, store

    server = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    (tmp_path / "server").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    root = tmp_path / "results" / "lab"
    out = root / "runs" / "tiny" / "throwaway-s0"
    run = _train(tiny_dir, tiny_data, tmp_path, out)
    client = client_for(server)
    (live,) = _runs(client, "train/runs/tiny/throwaway-s0")  # logged by the training job itself
    live_exp = client.get_experiment(live.info.experiment_id)
    assert live_exp.name == "lab/training" and live_exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert live.data.tags["pgpo.live"] == "true" and live.info.status == "FINISHED"
    stat = _stat([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])
    assert live.data.params["shaper.params.gain"] == str(GAIN) and live.data.metrics[stat] == GAIN
    assert abs(live.info.start_time - run.started_at) < 30_000  # the trainer's start, not the ingestion's
    assert live.info.artifact_uri.startswith((tmp_path / "server").as_uri())  # beside the server's db, not ./mlruns

    first = ingest(root, "table1", {"tiny/throwaway-s0": out}, {}, [])
    second = ingest(root, "table1", {"tiny/throwaway-s0": out}, {}, [])
    (after,) = _runs(client, "train/runs/tiny/throwaway-s0")  # exactly one run: the live one, completed
    assert first["runs"][str(out)] == second["runs"][str(out)] == live.info.run_id == after.info.run_id
    assert after.data.tags["mlflow.source.name"] == "pgpo train" and after.data.params["steps"] == "1"
    assert after.info.end_time == run.finished_at and len(after.inputs.dataset_inputs) == 1
    assert len(client.get_metric_history(after.info.run_id, stat)) == 1  # not logged twice
    local = client_for(store(root)[0])
    assert local.get_experiment_by_name("lab/table1") is None  # the ingestion wrote to the server only


def _eval_result(bench: str, inputs: dict, started: int) -> dict:
    """A scored result as pgpo score writes it (the fields ingestion reads)."""
    return {"benchmark": bench, "avg_at_k": 0.5, "k": 2, "n_questions": 3, "per_question": [], "ci95_bootstrap": [0.25, 0.75],
            "n_failed": 0, "checkpoint_hash": "abc", "generation": {
                "checkpoint": "runs/x/final", "backend": {"name": "pgpo_vlm"}, "inputs": inputs,
                "sampling": {"samples": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32},
                "code_version": "0" * 40 + "+dirty", "versions": {"lmms_eval": "0.7.3"}, "user": "someone",
                "started_at": started, "finished_at": started + 4000}}


def test_evaluations_carry_benchmark_revisions_times_and_an_existing_experiment_gets_its_kind(tmp_path,
                                                                                             monkeypatch):
    from pgpo.tracking.ingest import client_for, ingest, store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "results" / "prof"
    client = client_for(store(root)[0])
    client.create_experiment("prof/table1")  # an older store: no experiment kind
    ev = root / "eval" / "tiny" / "base"
    ev.mkdir(parents=True)
    sha, commit = "ab" * 32, "c" * 40
    (ev / "tiny_count.json").write_text(json.dumps({**_eval_result("tiny_count", {"split_sha256": sha}, 1_700_000_000_000),
                                                    "pass_at_k": {"mean": 0.75}, "maj_at_k": {"mean": 0.25}}))
    (ev / "mathvista.json").write_text(json.dumps(_eval_result(
        "mathvista", {"dataset": "AI4Math/MathVista", "commit": commit}, 1_700_000_010_000)))
    result = ingest(root, "table1", {}, {"eval/tiny/base": ev}, ["tiny_count", "mathvista"])
    exp = client.get_experiment(result["experiment_id"])
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(result["runs"][str(ev)])
    digests = {d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags}["mlflow.data.context"])
               for d in run.inputs.dataset_inputs}
    assert digests == {"tiny_count": (sha[:16], "evaluation"), "mathvista": (commit[:16], "evaluation")}
    kinds = {d.dataset.name: (d.dataset.source_type, json.loads(d.dataset.source)["uri"]) for d in run.inputs.dataset_inputs}
    assert kinds == {"tiny_count": ("local", "tiny_count"), "mathvista": ("hub", "AI4Math/MathVista")}
    assert (run.info.start_time, run.info.end_time) == (1_700_000_000_000, 1_700_000_014_000)
    assert run.data.tags["mlflow.source.name"] == "pgpo evaluate" and run.data.tags["mlflow.user"] == "someone"
    assert run.data.tags["mlflow.source.git.commit"] == "0" * 40 and run.data.tags["pgpo.code_dirty"] == "true"
    assert run.data.metrics["avg_at_k.mathvista"] == 0.5 and run.data.params["sampling.temperature"] == "1.0"
    assert (run.data.metrics["pass_at_k.tiny_count"], run.data.metrics["maj_at_k.tiny_count"]) == (0.75, 0.25)
    assert "pass_at_k.mathvista" not in run.data.metrics  # scored before the views existed


def test_every_table_file_and_figure_is_logged_on_the_parent(tmp_path, monkeypatch):
    from pgpo.tracking.ingest import client_for, ingest, log_table, store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "results" / "prof"
    parent = ingest(root, "table1", {}, {}, [])["parent_run_id"]
    files = [tmp_path / n for n in ("table1.md", "table1.csv", "table1.png", "table1_curves.png")]
    for f in files:
        f.write_bytes(b"x" * 10)
    log_table(root, parent, files, [{"row": "pgpo", "mean": 0.5}])
    logged = {a.path for a in client_for(store(root)[0]).list_artifacts(parent)}
    assert logged == {"table.json", "table1.md", "table1.csv", "table1.png", "table1_curves.png"}
    with pytest.raises(FileNotFoundError, match="table1_missing.png"):
        log_table(root, parent, [tmp_path / "table1_missing.png"], [{"row": "pgpo", "mean": 0.5}])


def test_a_copied_results_folder_is_tracked_in_place(tmp_path, monkeypatch):
    """Issue 23: MLflow keeps absolute artifact locations; after `cp -r` of a results folder, tracking the copy
    wrote its tables and figures into the original tree. Now the copy's store is re-rooted on its next ingestion."""
    from pgpo.tracking.ingest import client_for, ingest, log_table, store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original = tmp_path / "a" / "prof"
    parent = ingest(original, "table1", {}, {}, [])["parent_run_id"]
    table = tmp_path / "table1.md"
    table.write_text("| row |\n")
    log_table(original, parent, [table], [{"row": "pgpo", "mean": 0.5}])
    copy = tmp_path / "b" / "prof"
    shutil.copytree(original, copy)
    shutil.rmtree(original / "mlflow" / "artifacts")  # the original's artifacts gone: nothing may be read there
    (original / "mlflow" / "artifacts").mkdir()
    table.write_text("| row |\n| pgpo |\n")
    # as a user runs it: a new process (MLflow caches each run's artifact location for the life of a process)
    code = ("import sys\nfrom pathlib import Path\nfrom pgpo.tracking.ingest import ingest, log_table\n"
            "parent = ingest(Path(sys.argv[1]), 'table1', {}, {}, [])['parent_run_id']\n"
            "log_table(Path(sys.argv[1]), parent, [Path(sys.argv[2])], [{'row': 'pgpo', 'mean': 0.6}])\n"
            "print(parent)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(copy), str(table)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == parent  # the same store, the same parent run
    client = client_for(store(copy)[0])
    assert client.get_run(parent).info.artifact_uri.startswith((copy / "mlflow" / "artifacts").resolve().as_uri())
    assert {a.path for a in client.list_artifacts(parent)} == {"table.json", "table1.md"}
    assert not any((original / "mlflow" / "artifacts").iterdir())  # nothing written into the original tree
    logged = Path(client.download_artifacts(parent, "table1.md", str(tmp_path)))
    assert logged.read_text() == "| row |\n| pgpo |\n"


def test_a_writer_holding_the_store_lock_can_call_another_writer(tmp_path, monkeypatch):
    """The testbed's mirror holds the store's lock and logs a table through pgpo.tracking.ingest.log_table, which
    takes it too: the same process re-enters it (two lock objects of one file waited 600 s on each other)."""
    from pgpo.tracking.ingest import writer_lock
    from pgpo.tracking.store import store, store_lock

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "results" / "prof"
    with writer_lock(root):
        lock = store_lock(store(root)[0])
        lock.acquire(timeout=0)  # would raise filelock.Timeout at once if it were another object
        lock.release()
        assert lock.is_locked
    assert not lock.is_locked
