"""MLflow ingestion: the JSON results on disk are the source of truth; this mirrors them into MLflow.

One sqlite store per profile (results/<profile>/mlflow/mlflow.db) with an explicit artifact root, or the server
MLFLOW_TRACKING_URI names (a lab's shared server); every training run in the experiment `<profile>/training` (where
the training jobs log live: the curves of all methods in one place, grouped by method), an experiment per target
(table1, ablation_thresholds, ...) for its parent run and a child run per evaluation; all marked as model-training
experiments. Each run has its real start and end time, the standard system tags and its dataset inputs. Runs are
keyed by the tag `pgpo.key`; a run whose sources are unchanged (`pgpo.source_hash`) is left alone, a changed one is
replaced, so re-ingesting never duplicates. A training run the training job logged live (pgpo.tracking.live, tag
`pgpo.live`) is completed in place wherever it is. Only one process should write (the workflow runs ingestion as a
single local job).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from pgpo.tracking.store import (KEY, LIVE, SOURCE, artifact_root, client_for, dataset_inputs, experiment, log_everything,
                                 live_experiment, log_samples, logged_sample_steps, reroot_moved_store, store,
                                 store_lock, training_view)
from pgpo.tracking.records import Record, eval_record, run_key, system_tags, train_record
from pgpo.records.stages import RUN_FILE, result_path
from pgpo.util.errors import DataError
from pgpo.util.provenance import short_digest

FORMAT = "3"  # what ingestion logs per run; part of the source hash, so a newer format replaces older runs


def tracking_uri(root: str | Path) -> tuple[str, str | None]:
    """(URI, artifact root or None = the server's) ingestion writes to: MLFLOW_TRACKING_URI when set, else the
    profile's own store. A sqlite URI given that way keeps its artifacts beside its database."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, artifact_root(uri)
    uri, artifacts = store(root)
    reroot_moved_store(Path(uri.removeprefix("sqlite:///")), artifacts)  # a results folder copied or moved
    return uri, artifacts


def _client(root):
    return client_for(tracking_uri(root)[0])


def _files_hash(paths: list[Path]) -> str:
    h = hashlib.sha256(FORMAT.encode())
    for p in sorted(paths):
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return short_digest(h.hexdigest())


def _live_run(client, key: str):
    """The run the training job logged live under `key`, in any experiment of the store (None if there is none)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, filter_string=f"tags.`{KEY}` = '{key}' and tags.`{LIVE}` = 'true'") if ids else []
    return found[0] if found else None


def _complete_live(client, run, exp_id: str, source_hash: str, name: str, parent: str | None, record: Record,
                   params: dict, tags: dict) -> str:
    """Fill a live-logged run in place with what the live logger could not know (final params, the run's own
    metrics file, times, inputs); nothing it already holds is logged twice."""
    run_id = run.info.run_id
    if run.data.tags.get(SOURCE) == source_hash:
        return run_id
    have = run.data.params
    clashes = sorted(k for k, v in params.items() if k in have and have[k] != str(v)[:6000])
    if clashes:
        print(f"pgpo track: {name}: live params {clashes} differ from run.json; kept the live values (MLflow params "
              "are immutable), run.json is the record")
    logged = {(k, m.step) for k in run.data.metrics for m in client.get_metric_history(run_id, k)}
    log_everything(client, run_id, params, record.metrics, skip_params=set(have), skip_metrics=logged)
    all_tags = {**tags, SOURCE: source_hash, "mlflow.runName": name}
    if parent and run.info.experiment_id == exp_id:
        all_tags["mlflow.parentRunId"] = parent
    for k, v in all_tags.items():
        client.set_tag(run_id, k, v)
    have_inputs = {(d.dataset.name, d.dataset.digest) for d in (run.inputs.dataset_inputs if run.inputs else [])}
    client.log_inputs(run_id, datasets=dataset_inputs([d for d in record.datasets if d[:2] not in have_inputs]))
    client.set_terminated(run_id, end_time=record.end_ms)
    return run_id


def upsert(client, exp_id: str, key: str, source_hash: str, name: str, parent: str | None, record: Record,
           params: dict, tags: dict, legacy_key: str | None = None) -> str:
    """The run keyed `key`: reused if its sources are unchanged, else (re)created with everything logged.
    A run stored under `legacy_key` (an older ingestion's key) is replaced."""
    if legacy_key:
        for run in client.search_runs([exp_id], filter_string=f"tags.`{KEY}` = '{legacy_key}'"):
            client.delete_run(run.info.run_id)
    found = client.search_runs([exp_id], filter_string=f"tags.`{KEY}` = '{key}'")
    for run in found:
        if run.data.tags.get(SOURCE) == source_hash:
            return run.info.run_id
        client.delete_run(run.info.run_id)
    all_tags = {KEY: key, SOURCE: source_hash, "mlflow.runName": name, **tags}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    if record.start_ms is None:
        all_tags["pgpo.times"] = "not recorded in the result files: start and end are the ingestion's"
    run = client.create_run(exp_id, start_time=record.start_ms, tags=all_tags)
    log_everything(client, run.info.run_id, params, record.metrics)
    if record.datasets:
        client.log_inputs(run.info.run_id, datasets=dataset_inputs(record.datasets))
    client.set_terminated(run.info.run_id, end_time=record.end_ms)
    return run.info.run_id


def ingest(root: str | Path, target: str, trainings: dict[str, Path], evaluations: dict[str, Path],
           benchmarks: list[str], labels: dict[str, dict] | None = None) -> dict:
    """Mirror training runs and evaluations into experiment `<profile>/<target>`.

    trainings / evaluations: name -> directory; labels: name -> extra params (size, method, seed, variant).
    Returns {"experiment_id", "parent_run_id", "runs": {directory: run_id}}.
    Writers of one store take turns (a file lock beside it): two ingestions started at once on a fresh store
    would otherwise race on MLflow's schema creation (a raw sqlite error) and on the upserts."""
    with writer_lock(root):
        return _ingest(root, target, trainings, evaluations, benchmarks, labels)


def writer_lock(root):
    """The lock of the store `root` writes to (the profile's, or a sqlite MLFLOW_TRACKING_URI's; none for a server)."""
    from contextlib import nullcontext

    return store_lock(os.environ.get("MLFLOW_TRACKING_URI") or store(root)[0]) or nullcontext()


def _ingest(root, target, trainings, evaluations, benchmarks, labels) -> dict:
    from pgpo.util.provenance import code_version

    uri, artifacts = tracking_uri(root)
    client = client_for(uri)
    exp_id = experiment(client, f"{Path(root).name}/{target}", artifacts)
    sources = [d / RUN_FILE for d in trainings.values()] + \
              [result_path(d, b) for d in evaluations.values() for b in benchmarks]
    # the parent is kept across re-ingestion (children point at it); the sources hash is only a tag on it
    parent = upsert(client, exp_id, f"{target}/parent", "parent", target, None, Record({}, [], {}, []),
                    {"target": target, "benchmarks": ",".join(benchmarks)},
                    system_tags("pgpo track", code_version(), None))
    client.set_tag(parent, "sources_hash", _files_hash(sources))
    labels = labels or {}
    ids = {}
    for name, run_dir in trainings.items():
        record = train_record(run_dir)
        key, params = run_key(run_dir), {**record.params, **labels.get(name, {})}
        tags, source_hash = {**record.tags, "kind": "train"}, _files_hash(record.files)
        live = _live_run(client, key)
        train_exp = experiment(client, live_experiment(run_dir), artifacts)  # every training run's curves, one place
        training_view(client, train_exp)
        if train_exp != exp_id:  # an older ingestion kept training runs in the target's experiment
            for old_key in (key, f"train/{name}"):
                for old in client.search_runs([exp_id], filter_string=f"tags.`{KEY}` = '{old_key}'"):
                    client.delete_run(old.info.run_id)
        run_id = ids[str(run_dir)] = (
            _complete_live(client, live, train_exp, source_hash, f"train {name}", None, record, params, tags) if live
            else upsert(client, train_exp, key, source_hash, f"train {name}", None, record, params, tags,
                        legacy_key=f"train/{name}"))
        try:
            log_samples(client, run_id, run_dir, logged_sample_steps(client, run_id))
        except DataError as e:  # the rollout samples are beside the record, not the record: warn, go on
            print(f"pgpo track: warning: {e}; the run's samples are not in MLflow", file=sys.stderr)
    for name, eval_dir in evaluations.items():
        record = eval_record(eval_dir, benchmarks)
        ids[str(eval_dir)] = upsert(client, exp_id, f"eval/{name}", _files_hash(record.files), f"eval {name}",
                                    parent, record, {**record.params, **labels.get(name, {})},
                                    {**record.tags, "kind": "evaluation"})
    return {"experiment_id": exp_id, "parent_run_id": parent, "runs": ids}


def log_table(root: str | Path, parent_run_id: str, files: list[Path], table_rows: list[dict],
              more_tables: dict[str, list[dict]] | None = None) -> None:
    """Attach a finished table (rows as dicts, via log_table) and every file of it (md, csv, each figure's png)
    to the parent run, as artifacts under their own names; `more_tables`: artifact file -> rows of another table
    (the paired differences: diff.json). Holds the store's lock: training jobs write it live meanwhile."""
    with writer_lock(root):
        _log_table(root, parent_run_id, files, table_rows, more_tables)


def _log_table(root, parent_run_id, files, table_rows, more_tables) -> None:
    client = _client(root)
    client.log_table(parent_run_id, data={k: [r[k] for r in table_rows] for k in table_rows[0]},
                     artifact_file="table.json")
    for artifact, rows in (more_tables or {}).items():
        if rows:
            client.log_table(parent_run_id, data={k: [r[k] for r in rows] for k in rows[0]}, artifact_file=artifact)
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"pgpo table: files to log to MLflow run {parent_run_id} do not exist: {missing}")
    for f in files:
        client.log_artifact(parent_run_id, str(f))
