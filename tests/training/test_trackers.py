"""Other trackers beside MLflow (issue 25, item 3): the recipe's report_to reaches transformers, and the curves
land where TensorBoard and W&B (offline) read them, from `pgpo train` as users run it."""

import json
import os
import subprocess

import pytest
from training_runs import train_cmd

pytestmark = pytest.mark.slow


def _train(tiny_dir, tiny_data, out, tracker, env=None):
    cmd = train_cmd(tiny_dir, tiny_data, out, "grpo", "--set", f"report_to=[{tracker}]", steps=2)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_the_curves_of_metrics_jsonl(tiny_dir, tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    rows = _train(tiny_dir, tiny_data, out, "tensorboard")
    events = list(out.rglob("events.out.tfevents.*"))
    assert len(events) == 1, events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    curve = [(e.step, e.value) for e in acc.Scalars("train/step_time")]  # a value that differs at every step
    assert curve == [(r["step"], pytest.approx(r["step_time"], rel=1e-6)) for r in rows]
    assert [e.value for e in acc.Scalars("train/reward")] == [pytest.approx(r["reward"], abs=1e-6) for r in rows]
    assert "train/rewards/accuracy_reward/share" in acc.Tags()["scalars"]


def test_wandb_offline_writes_a_run_with_the_curves(tiny_dir, tiny_data, tmp_path):
    pytest.importorskip("wandb")
    out = tmp_path / "run"
    rows = _train(tiny_dir, tiny_data, out, "wandb",
                  {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_PROJECT": "pgpo-test",
                   "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"})
    (run_file,) = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    curve = {int(step): float(h["train/step_time"]) for step, h in _wandb_history(run_file)
             if "train/step_time" in h for step in [h["train/global_step"]]}
    assert curve == {r["step"]: pytest.approx(r["step_time"], rel=1e-6) for r in rows}


def _wandb_history(run_file):
    """The history records of an offline W&B run file, read with wandb's own reader (what `wandb sync` uploads)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(run_file))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            yield items.get("train/global_step"), items
