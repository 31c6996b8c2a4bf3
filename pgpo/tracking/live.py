"""Live MLflow logging from a training job: to MLFLOW_TRACKING_URI when set (e.g. a lab's shared server), else, for a
run in the workflow's layout, to the profile's own sqlite store (results/<profile>/mlflow/mlflow.db): curves appear
while a run trains, with no server (PGPO_LIVE_MLFLOW=0 turns that default off). Writers of that store take turns
through the ingestion's file lock: a step's points wait in memory while another job holds it (never blocking
training), and the last ones are written at the end of training.

Rank 0 opens a run keyed like the ingestion keys it (`pgpo.key` = pgpo.tracking.records.run_key of the output
directory, tag `pgpo.live`), logs the flattened method and recipe params and the training split as a dataset
input at the start, every statistic the trainer logs, and the rollout samples (pgpo/training/samples.py) as one
MLflow table per logged step (samples/step_<N>.json), live. The workflow's `pgpo track` later completes that
same run in place instead of creating another. The experiment is MLFLOW_EXPERIMENT_NAME, else
`<profile>/training` (the profile is the results root's name; 'pgpo/training' outside the workflow's layout).
A server that stops answering never stops training: live logging is switched off with one warning, and the
ingestion still records everything from the files.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path


def live_uri(out: Path) -> str | None:
    """Where a run at `out` logs live: MLFLOW_TRACKING_URI, else its profile's store, else nowhere."""
    from pgpo.tracking.records import results_root

    if os.environ.get("PGPO_LIVE_MLFLOW", "1") == "0":
        return None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = results_root(out)
    if root is None:
        return None
    from pgpo.tracking.store import store

    return store(root)[0]


def live_callbacks(out: str | Path, cfg, method) -> list:
    """[the live logger] when the run logs live (live_uri) and this is rank 0, else []."""
    uri = live_uri(Path(out))
    if uri is None or int(os.environ.get("RANK", "0")) != 0:
        return []
    from filelock import Timeout
    from transformers import TrainerCallback

    from pgpo.tracking.store import (KEY, LIVE, artifact_root, client_for, dataset_inputs, experiment, live_experiment,
                                     log_everything, log_samples, logged_sample_steps, store_lock, training_view)
    from pgpo.util.provenance import code_version
    from pgpo.tracking.records import method_params, run_key, system_tags, train_dataset, with_headline

    out = Path(out)
    # a JSON round trip: the params must read exactly as the ingestion reads them back from run.json
    params = {**method_params(json.loads(json.dumps(asdict(method))), json.loads(json.dumps(asdict(cfg)))),
              "seed": cfg.seed}

    class LiveMLflow(TrainerCallback):
        run_id: str | None = None

        def __init__(self):
            self.lock = store_lock(uri)
            self.points: list = []  # metric points not yet written (the store was busy)
            self.logged_up_to = 0  # steps already in MLflow from an attempt this run resumes
            self.sample_steps: set[int] = set()  # steps whose samples table the run holds

        def _off(self, what, e):
            warnings.warn(f"live MLflow logging to {uri} failed ({what}: {e}); switched off for this run, "
                          "`pgpo track` will record it from the files", stacklevel=3)
            self.run_id = None

        def _guard(self, what, fn, block=True):
            """fn() holding the store's lock (waiting for it if `block`, else trying once: False if busy)."""
            try:
                if self.lock is not None:
                    self.lock.acquire(timeout=600 if block else 0)
            except Timeout:
                if block:  # another writer held the store 10 minutes: say so rather than lose the run silently
                    self._off(what, f"{self.lock.lock_file} busy for 600 s")
                return False
            except OSError as e:  # a read-only or foreign lock file: training goes on without live curves
                self._off(what, e)
                return False
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - any server failure: keep training, the files are the record
                self._off(what, e)
            finally:
                if self.lock is not None:
                    self.lock.release()
            return True

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._guard("start", self._start)

        def _start(self):
            from pgpo.data.datasets import sha256_file

            self.client = client = client_for(uri)
            exp_id = experiment(client, live_experiment(out), artifact_root(uri))
            training_view(client, exp_id)
            key = run_key(out)
            found = client.search_runs([exp_id], filter_string=f"tags.`{KEY}` = '{key}'")
            # train() deletes metrics.jsonl on a fresh start: a run with metrics on disk is resuming
            resuming = (out / "metrics.jsonl").exists()
            if found and resuming:
                self.run_id = found[0].info.run_id
                client.update_run(self.run_id, status="RUNNING")
                # what the killed attempt logged after its checkpoint: a resumed run logs those steps again with the
                # same values (it equals the uninterrupted run), so they are skipped rather than doubled in MLflow
                self.logged_up_to = max((m.step for m in client.get_metric_history(self.run_id, "loss")), default=0)
                self.sample_steps = logged_sample_steps(client, self.run_id)
                return
            for run in found:
                client.delete_run(run.info.run_id)
            tags = {KEY: key, LIVE: "true", "mlflow.runName": f"train {key.removeprefix('train/')}", "kind": "train",
                    **system_tags("pgpo train", code_version(), None)}
            self.run_id = client.create_run(exp_id, start_time=int(time.time() * 1000), tags=tags).info.run_id
            log_everything(client, self.run_id, params, [])
            split = cfg.data.train
            client.log_inputs(self.run_id, datasets=dataset_inputs([train_dataset(split, sha256_file(split))]))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.run_id and logs and "loss" in logs and state.global_step > self.logged_up_to:  # one per step
                now = int(time.time() * 1000)
                self.points += with_headline([(k, v, state.global_step, now) for k, v in logs.items()
                                              if isinstance(v, (int, float)) and not isinstance(v, bool)])
                self._guard("log", self._flush, block=False)

        def _flush(self):
            log_everything(self.client, self.run_id, {}, self.points)
            self.points = []
            self.sample_steps = log_samples(self.client, self.run_id, out, self.sample_steps, live=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.run_id:
                self._guard("end", lambda: (self._flush(), self.client.set_terminated(self.run_id)))

    return [LiveMLflow()]
