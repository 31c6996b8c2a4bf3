"""MLflow ingestion: the JSON results on disk are the source of truth; this mirrors them into MLflow.

One sqlite store per profile (results/<profile>/mlflow/mlflow.db) with an explicit artifact root; an experiment
per target (table1, ablation_thresholds, ...), a parent run per target and a child run per training run and per
evaluation. Runs are keyed by the tag `pgpo.key`; a run whose sources are unchanged (`pgpo.source_hash`) is
left alone, a changed one is replaced, so re-ingesting never duplicates. Only one process should write (the
workflow runs ingestion as a single local job).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

KEY, SOURCE = "pgpo.key", "pgpo.source_hash"
CURVES = ("reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean", "completions/mean_length",
          "entropy", "grad_norm", "dynamic_sampling/kept_fraction")
# every statistic a blind view, shaper or loss term logs (whatever the method) is a curve too
CURVE_PREFIXES = ("dependency/", "weights/", "vppo/", "blind/", "loss_terms/")


def _is_curve(key: str) -> bool:
    return key in CURVES or key.startswith(CURVE_PREFIXES)


def store(root: str | Path) -> tuple[str, str]:
    """(tracking URI, artifact root URI) of a profile's MLflow store under results/<profile>/mlflow."""
    base = Path(root).resolve() / "mlflow"
    (base / "artifacts").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'mlflow.db'}", (base / "artifacts").as_uri()


def _client(root):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    uri, _ = store(root)
    return MlflowClient(tracking_uri=uri)


def _experiment(client, root, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    _, artifacts = store(root)
    return client.create_experiment(name, artifact_location=f"{artifacts}/{name.replace('/', '_')}")


def _files_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _upsert(client, exp_id: str, key: str, source_hash: str, name: str, parent: str | None, params: dict,
            metrics: list[tuple[str, float, int]], tags: dict) -> str:
    """The run keyed `key`: reused if its sources are unchanged, else (re)created with everything logged."""
    from mlflow.entities import Metric, Param

    found = client.search_runs([exp_id], filter_string=f"tags.`{KEY}` = '{key}'")
    for run in found:
        if run.data.tags.get(SOURCE) == source_hash:
            return run.info.run_id
        client.delete_run(run.info.run_id)
    all_tags = {KEY: key, SOURCE: source_hash, "mlflow.runName": name, **tags}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, tags=all_tags)
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, int(s)) for k, v, s in metrics]
    for i in range(0, max(1, len(items)), 900):  # the REST limit is 1000 metrics per batch
        client.log_batch(run.info.run_id, metrics=items[i:i + 900],
                         params=[Param(k, str(v)[:500]) for k, v in params.items()] if i == 0 else [])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _blind_view(run: dict) -> str:
    """The blind view a run used ('-' if none; run.json files older than the peer baselines stored a bare name)."""
    view = run["method"].get("blind_view", "")
    name = view.get("name", "") if isinstance(view, dict) else view
    return name if run.get("uses_blind_view", run["method"]["shaper"]["name"] != "identity") else "-"


def _train_record(run_dir: Path) -> tuple[dict, list, dict, list[Path]]:
    run = json.loads((run_dir / "run.json").read_text())
    shaper = run["method"]["shaper"]["params"]
    params = {"method": run["method"]["name"], "seed": run["config"]["seed"], "steps": run["global_steps"],
              "recipe_hash": run["config_hash"], "shaper": run["method"]["shaper"]["name"],
              "tau": shaper.get("tau", ""), "beta": shaper.get("beta", ""), "normalize": shaper.get("normalize", ""),
              "loss": run["method"]["loss"]["type"], "lr": run["config"]["optim"]["lr"],
              "blind_view": _blind_view(run),
              "loss_terms": ",".join(f"{k}:{v}" for k, v in sorted(run["method"].get("loss_terms", {}).items())) or "-"}
    metrics = []
    curve = run_dir / "metrics.jsonl"
    for line in curve.read_text().splitlines() if curve.exists() else []:
        row = json.loads(line)
        metrics += [(k.replace("/", "."), v, row["step"]) for k, v in row.items()
                    if _is_curve(k) and isinstance(v, (int, float))]
    metrics.append(("wall_seconds", run["wall_seconds"], 0))
    tags = {"code_version": run["code_version"], "torch": run["versions"]["torch"],
            "trl": run["versions"]["trl"], "checkpoint_hash": run.get("final_checkpoint_hash", "")}
    return params, metrics, tags, [run_dir / "run.json"] + ([curve] if curve.exists() else [])


def _eval_record(eval_dir: Path, benchmarks: list[str]) -> tuple[dict, list, dict, list[Path]]:
    results = {b: json.loads((eval_dir / f"{b}.json").read_text()) for b in benchmarks}
    first = next(iter(results.values()))
    gen = first["generation"]
    metrics = [(f"avg_at_k.{b}", r["avg_at_k"], 0) for b, r in results.items()]
    metrics += [(f"ci95_low.{b}", r["ci95_bootstrap"][0], 0) for b, r in results.items()]
    metrics += [(f"ci95_high.{b}", r["ci95_bootstrap"][1], 0) for b, r in results.items()]
    metrics.append(("avg_at_k.mean", sum(r["avg_at_k"] for r in results.values()) / len(results), 0))
    metrics.append(("failed_generations", sum(r["n_failed"] for r in results.values()), 0))
    params = {"k": first["k"], "backend": gen["backend"]["name"], "checkpoint": gen["checkpoint"],
              "temperature": gen["sampling"]["temperature"], "top_p": gen["sampling"]["top_p"],
              "max_new_tokens": gen["sampling"]["max_new_tokens"]}
    revisions = {b: r["generation"]["inputs"].get("commit") or r["generation"]["inputs"].get("split_sha256", "")
                 for b, r in results.items()}
    tags = {"code_version": gen["code_version"], "lmms_eval": gen["versions"]["lmms_eval"],
            "checkpoint_hash": first["checkpoint_hash"], "dataset_revisions": json.dumps(revisions)[:4900]}
    return params, metrics, tags, [eval_dir / f"{b}.json" for b in benchmarks]


def ingest(root: str | Path, target: str, trainings: dict[str, Path], evaluations: dict[str, Path],
           benchmarks: list[str], labels: dict[str, dict] | None = None) -> dict:
    """Mirror training runs and evaluations into experiment `<profile>/<target>`.

    trainings / evaluations: name -> directory; labels: name -> extra params (size, method, seed, variant).
    Returns {"experiment_id", "parent_run_id", "runs": {directory: run_id}}.
    Writers of one store take turns (a file lock beside it): two ingestions started at once on a fresh store
    would otherwise race on MLflow's schema creation (a raw sqlite error) and on the upserts."""
    from filelock import FileLock

    _, _ = store(root)  # creates the store folder the lock lives in
    with FileLock(str(Path(root).resolve() / "mlflow" / "mlflow.db.lock"), timeout=600):
        return _ingest(root, target, trainings, evaluations, benchmarks, labels)


def _ingest(root, target, trainings, evaluations, benchmarks, labels) -> dict:
    client = _client(root)
    exp_id = _experiment(client, root, f"{Path(root).name}/{target}")
    sources = [p for d in trainings.values() for p in (d / "run.json",)] + \
              [d / f"{b}.json" for d in evaluations.values() for b in benchmarks]
    # the parent is kept across re-ingestion (children point at it); the sources hash is only a tag on it
    parent = _upsert(client, exp_id, f"{target}/parent", "parent", target, None,
                     {"target": target, "benchmarks": ",".join(benchmarks)}, [], {})
    client.set_tag(parent, "sources_hash", _files_hash(sources))
    labels = labels or {}
    ids = {}
    for name, run_dir in trainings.items():
        params, metrics, tags, files = _train_record(run_dir)
        ids[str(run_dir)] = _upsert(client, exp_id, f"train/{name}", _files_hash(files), f"train {name}", parent,
                                    {**params, **labels.get(name, {})}, metrics, {**tags, "kind": "train"})
    for name, eval_dir in evaluations.items():
        params, metrics, tags, files = _eval_record(eval_dir, benchmarks)
        ids[str(eval_dir)] = _upsert(client, exp_id, f"eval/{name}", _files_hash(files), f"eval {name}", parent,
                                     {**params, **labels.get(name, {})}, metrics, {**tags, "kind": "evaluation"})
    return {"experiment_id": exp_id, "parent_run_id": parent, "runs": ids}


def log_table(root: str | Path, parent_run_id: str, files: list[Path], table_rows: list[dict]) -> None:
    """Attach a finished table (rows as dicts, via log_table) and its md/csv/png files to the parent run."""
    client = _client(root)
    client.log_table(parent_run_id, data={k: [r[k] for r in table_rows] for k in table_rows[0]},
                     artifact_file="table.json")
    for f in files:
        client.log_artifact(parent_run_id, str(f))
