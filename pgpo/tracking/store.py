"""The MLflow side shared by the ingestion (pgpo.tracking.ingest) and the live logger (pgpo.tracking.live): clients,
model-training experiments, batched logging within MLflow's request limits, dataset inputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

KEY, SOURCE, LIVE = "pgpo.key", "pgpo.source_hash", "pgpo.live"
# MLflow's own record of an experiment's kind (its search and older UIs read it). MLflow 3.17's UI picks its view
# from the URL (?workflowType=machine_learning) or its sidebar switch instead; docs/results.md says so.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
BATCH = 100  # MLflow's per-request limits: 1000 metrics, 100 params


def store(root: str | Path) -> tuple[str, str]:
    """(tracking URI, artifact root URI) of a profile's MLflow store under results/<profile>/mlflow."""
    base = Path(root).resolve() / "mlflow"
    (base / "artifacts").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'mlflow.db'}", (base / "artifacts").as_uri()


_LOCKS: dict = {}


def store_lock(uri: str):
    """The file lock every writer of a sqlite store takes (training jobs live, `pgpo track`, `pgpo table`, the
    testbed), None for a server (it serialises its own writes). One object per store in a process, so a writer
    that holds it and calls another writer (the testbed's mirror logging a table) re-enters it instead of waiting
    on itself (two FileLock objects of one file block each other)."""
    if not uri.startswith("sqlite:///"):
        return None
    from filelock import FileLock

    path = str(Path(uri.removeprefix("sqlite:///")).resolve()) + ".lock"
    return _LOCKS.setdefault(path, FileLock(path, timeout=600))


def live_experiment(out: Path) -> str:
    """The experiment of every training run of a results root (where its job logs live and the ingestion finds
    it): MLFLOW_EXPERIMENT_NAME, else `<profile>/training` ('pgpo/training' outside the workflow's layout)."""
    from pgpo.tracking.records import results_root

    root = results_root(out)
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"{root.name if root else 'pgpo'}/training"


def artifact_root(uri: str) -> str | None:
    """Where new experiments of a store keep artifacts: beside a sqlite database (MLflow's own default is
    ./mlruns in whatever the working directory is), or None for a server, which decides. A store that was moved
    is re-rooted first (reroot_moved_store)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    base = db.parent / "artifacts"
    base.mkdir(parents=True, exist_ok=True)
    reroot_moved_store(db, base.as_uri())
    return base.as_uri()


def reroot_moved_store(db: Path, artifacts: str) -> int:
    """Point the artifact locations of a moved or copied sqlite store at `artifacts` (the folder beside it now).

    MLflow records each experiment's artifact location and each run's artifact URI as absolute file:// URIs when
    they are created; after `cp -r results/tiny elsewhere` the copy's tables and figures were written into the
    original tree. Every location under another `.../artifacts` root (ours are always `<store>/artifacts/<exp>`)
    is rewritten to the same path under `artifacts`. MLflow has no API for this: it is one UPDATE of two columns
    of its schema (experiments.artifact_location, runs.artifact_uri), stable since MLflow 1.x and checked by
    tests/tracking/test_tracking.py against the installed version. Returns the number of rows changed."""
    import sqlite3

    if not db.is_file():
        return 0
    check_store(db)
    con = sqlite3.connect(db, timeout=60)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"experiments", "runs"} <= tables:
            return 0
        locations = [r[0] for r in con.execute("SELECT artifact_location FROM experiments")]
        old_roots = {loc.rsplit("/", 1)[0] for loc in locations if loc and loc.startswith("file://")
                     and loc.rsplit("/", 1)[0].endswith("/artifacts") and not loc.startswith(artifacts + "/")}
        changed = 0
        for old in sorted(old_roots):
            n = len(old) + 1
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                changed += con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                       f"WHERE substr({column}, 1, ?) = ?", (artifacts, n, n, old + "/")).rowcount
        con.commit()
        return changed
    finally:
        con.close()


def check_store(db: Path) -> None:
    """CorruptFile naming `db` and the fix unless sqlite's own check passes (a cut or overwritten store raised raw
    `sqlite3.DatabaseError`s from inside MLflow, naming neither the file nor what to do). The store is a mirror of
    the run directories, so the fix is to rebuild it."""
    import sqlite3

    from pgpo.util.jsonfile import CorruptFile

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
        try:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        verdict = str(e)
    if verdict != "ok":
        raise CorruptFile(f"{db}: not a readable MLflow sqlite store ({verdict}); move it aside (`mv {db} "
                          f"{db}.broken`) and rerun the workflow's tracking (`snakemake ... --forcerun "
                          "track_<target>`): every run is mirrored again from its run directory")


def client_for(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# The training experiment's view (MLflow's shared view state: an experiment tag the UI opens with
# `?viewStateShareKey=pgpo`, see pgpo status): runs grouped by their `method` param, averaged over seeds.
VIEW_KEY = "pgpo"
TRAINING_VIEW = {"groupBy": "param.average.method", "hideEmptyCharts": True, "useGroupedValuesInCharts": True}


def training_view(client, exp_id: str) -> None:
    client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(TRAINING_VIEW))


def experiment(client, name: str, artifacts: str | None) -> str:
    """The id of experiment `name` (created if missing), marked as a model-training experiment."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = f"{artifacts}/{name.replace('/', '_')}" if artifacts else None
        exp_id = client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING})
    else:
        exp_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
    return exp_id


def dataset_inputs(datasets: list) -> list:
    """(name, digest, source type, source, context, profile) -> MLflow DatasetInputs tagged with their context."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return [DatasetInput(Dataset(name, digest, kind, json.dumps({"uri": source}),
                                 profile=json.dumps(profile, default=str)),
                         tags=[InputTag("mlflow.data.context", context)])
            for name, digest, kind, source, context, profile in datasets]


def log_everything(client, run_id: str, params: dict, metrics: list, skip_params=(), skip_metrics=()) -> None:
    """Params and metrics (key, value, step, timestamp ms or None) in batches within MLflow's request limits;
    params in skip_params and (key, step) pairs in skip_metrics are already on the run."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in skip_params]
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=items[i:i + BATCH])
    points = [Metric(k, float(v), int(t or now), int(s)) for k, v, s, t in metrics if (k, int(s)) not in skip_metrics]
    for i in range(0, len(points), 900):
        client.log_batch(run_id, metrics=points[i:i + 900])


def sample_table(samples: list[dict]) -> dict:
    """Rollout samples (pgpo.training.samples.RolloutSample dicts) -> MLflow table columns. `weighted` shows each
    token with its weight, `token|1.84`, the way a reader scans which tokens got the credit."""
    def weighted(s):
        weights = s["weights"] or [None] * len(s["tokens"])
        return " ".join(f"{t}|{w:.2f}" if w is not None else t for t, w in zip(s["tokens"], weights))

    columns = ("step", "index", "prompt_id", "images", "prompt", "response", "reward", "advantage", "tokens",
               "weights", "dependency", "token_advantages")
    table = {c: [s[c] for s in samples] for c in columns}
    table["images"] = [", ".join(s["images"]) for s in samples]
    table["weighted"] = [weighted(s) for s in samples]
    return table


def logged_sample_steps(client, run_id: str) -> set[int]:
    """The steps whose samples table a run already holds (samples/step_<N>.json artifacts)."""
    return {int(f.path.rsplit("_", 1)[1].removesuffix(".json")) for f in client.list_artifacts(run_id, "samples")
            if f.path.endswith(".json")}


def log_samples(client, run_id: str, run_dir: Path, have: set[int], live: bool = False) -> set[int]:
    """Each step's rollout samples of <run_dir>/samples.jsonl not yet logged as the table samples/step_<N>.json;
    returns the steps logged now and before. A resumed run logs the steps after its checkpoint again with the
    same rollouts, so a step already there is skipped rather than appended twice (log_table appends)."""
    from pgpo.records.stages import read_samples

    by_step: dict[int, list] = {}
    for s in read_samples(run_dir, live):
        by_step.setdefault(s["step"], []).append(s)
    for step in sorted(set(by_step) - have):
        client.log_table(run_id, data=sample_table(by_step[step]), artifact_file=f"samples/step_{step:06d}.json")
    return have | set(by_step)
