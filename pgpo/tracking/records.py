"""What a result on disk becomes in MLflow: params, metric curves, system tags, times and dataset inputs.

Method-agnostic by construction: every numeric field the trainer logged (metrics.jsonl) is a curve under the
trainer's own name, and every method parameter is a param flattened from the method record in run.json
(`shaper.params.tau`, `loss_terms.<term>.<param>`, ...), so a new shaper, blind view or loss term shows up with
no change here. Shared by the ingestion (pgpo.tracking.ingest) and the live logger (pgpo.tracking.live).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from pathlib import Path

from pgpo.records.layout import Layout
from pgpo.records.stages import (METRICS_FILE, RUN_FILE, EvalResult, RunRecord, read_eval_result, read_metrics,
                                 read_run, result_path)
from pgpo.util.provenance import short_digest

# metrics.jsonl fields that index a row rather than measure anything
ROW_INDEX = ("step", "timestamp_ms")


@dataclass
class Record:
    """One MLflow run's content, read from result files."""

    params: dict  # name -> value (stringified when logged)
    metrics: list  # (key, value, step, timestamp_ms or None)
    tags: dict  # extra tags, system tags (mlflow.source.*, mlflow.user) included
    files: list  # the source files; their hash decides whether a stored run is current
    datasets: list = field(default_factory=list)  # (name, digest, source type, source, context, profile)
    start_ms: int | None = None  # real start (None: not recorded)
    end_ms: int | None = None  # real end (None: not recorded)


def flatten(obj, prefix: str = "") -> dict:
    """Nested mappings -> {'a.b.c': leaf}; lists become JSON text; empty mappings vanish."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        return {prefix.rstrip("."): json.dumps(obj)}
    return {prefix.rstrip("."): obj}


def method_params(method: dict, config: dict) -> dict:
    """Every method and recipe field as a flat param: the method's own keys at the top level ('method' is its
    name), the recipe under 'config.'."""
    method = dict(method)
    out = {"method": method.pop("name", "")}
    out.update(flatten(method))
    out.update(flatten(config, "config."))
    return out


def git_tags(code_version: str) -> dict:
    """mlflow.source.git.commit from a recorded code version ('<sha>', '<sha>+dirty' or 'unknown')."""
    sha, _, dirty = (code_version or "").partition("+")
    if len(sha) != 40:
        return {}
    return {"mlflow.source.git.commit": sha, **({"pgpo.code_dirty": "true"} if dirty else {})}


def system_tags(entry: str, code_version: str, user: str | None) -> dict:
    """The standard tags MLflow's UI shows (source, commit, user) for a run made by `entry`."""
    return {"mlflow.source.name": entry, "mlflow.source.type": "JOB", "mlflow.user": user or getpass.getuser(),
            **git_tags(code_version)}


def results_root(run_dir: str | Path) -> Path | None:
    """The profile's results root above a run directory laid out as <root>/runs/... or <root>/ablation/...
    (the workflow's layout), else None."""
    layout = Layout.of_run(run_dir)
    return Path(layout.root) if layout else None


def run_key(run_dir: str | Path) -> str:
    """The `pgpo.key` of a training run: its directory relative to the results root ('train/runs/tiny/pgpo-s0'),
    or its absolute path outside that layout. Computable from the directory alone, so the training job (live
    logging) and the ingestion find the same run."""
    path = Path(run_dir).resolve()
    root = results_root(path)
    return f"train/{path.relative_to(root) if root else path}"


# The statistics a reader looks at first. MLflow 3.17's chart view groups a metric by the part of its name before
# the last "/" and sorts those sections by name, with the unprefixed metrics ("Model metrics": loss, reward, ...)
# LAST (the bundle's extractChartSectionName / the section sort of its chart generator): `reward` came below
# about 40 charts. A copy of each under "Headline/" puts them in a section that sorts first (an uppercase name
# before every lowercase one); metrics.jsonl and the original names are unchanged.
HEADLINE_SECTION = "Headline"
HEADLINE = ("reward", "rewards/accuracy_reward/mean", "credit/answer_share", "dependency/mean", "entropy",
            "completions/mean_length", "step_time")


def with_headline(points: list) -> list:
    """Metric points (key, value, step, timestamp) plus their Headline/ copies (`credit/answer_share` ->
    `Headline/credit.answer_share`: the chart's title is the part after the last "/")."""
    return points + [(f"{HEADLINE_SECTION}/{k.replace('/', '.')}", v, s, t) for k, v, s, t in points if k in HEADLINE]


def curves(metrics_file: Path) -> list:
    """Every numeric field of every metrics.jsonl row as (key, value, step, logged time in ms or None), plus the
    Headline/ copies MLflow's chart view shows first (with_headline)."""
    rows = read_metrics(metrics_file, optional=True)
    return with_headline([(k, float(v), int(row["step"]), row.get("timestamp_ms")) for row in rows
                          for k, v in row.items()
                          if k not in ROW_INDEX and isinstance(v, (int, float)) and not isinstance(v, bool)])


def _digest(value: str) -> str:
    return short_digest(value)  # MLflow stores dataset digests in 36 characters; the full hash is in the profile


def blind_view(run: RunRecord) -> str:
    """The blind view a run used ('-' if none; run.json files older than the peer baselines stored a bare name)."""
    view = run.method.get("blind_view", "")
    name = view.get("name", "") if isinstance(view, dict) else view
    # run.json files older than `uses_blind_view` did not say; they show the view their method record names
    return name if run.uses_blind_view in (None, True) else "-"


def train_dataset(split: str, sha256: str) -> tuple:
    """The training split as a dataset input (digest: its sha256)."""
    return (Path(split).stem, _digest(sha256), "local", str(split), "training", {"sha256": sha256})


def train_record(run_dir: Path) -> Record:
    """A training run directory (run.json, metrics.jsonl) as an MLflow run."""
    run = read_run(run_dir)
    params = {**method_params(run.method, run.config), "seed": run.config["seed"],
              "steps": run.global_steps, "recipe_hash": run.config_hash, "blind_view": blind_view(run)}
    curve = run_dir / METRICS_FILE
    metrics = curves(curve)
    times = [t for *_, t in metrics if t]
    start = run.started_at or (min(times) if times else None)
    if times and start:
        start = min(start, min(times))  # a resumed run: its first attempt started earlier
    end = run.finished_at or (start + int(run.wall_seconds * 1000) if run.started_at else None)
    metrics.append(("wall_seconds", float(run.wall_seconds), 0, end))
    tags = {**system_tags("pgpo train", run.code_version, run.user), "code_version": run.code_version,
            "torch": run.versions["torch"], "trl": run.versions["trl"],
            "checkpoint_hash": run.final_checkpoint_hash}
    inputs = run.inputs
    datasets = [train_dataset(run.config["data"]["train"], inputs["train_split_sha256"])] \
        if inputs.get("train_split_sha256") else []
    return Record(params, metrics, tags, [run_dir / RUN_FILE] + ([curve] if curve.exists() else []), datasets,
                  start, end)


def eval_datasets(results: dict[str, EvalResult]) -> list:
    """One dataset input per benchmark: a hub revision (digest: the commit) or a local split (its sha256)."""
    out = []
    for bench, r in results.items():
        inputs = r.generation["inputs"]
        revision = inputs.get("commit") or inputs.get("split_sha256") or inputs.get("revision")
        if not revision:
            continue
        kind, source = ("hub", inputs["dataset"]) if inputs.get("dataset") else ("local", inputs.get("data_dir", bench))
        profile = {k: v for k, v in inputs.items() if isinstance(v, (str, int, float)) and v is not None}
        out.append((bench, _digest(revision), kind, str(source), "evaluation",
                    {**profile, "n_questions": r.n_questions}))
    return out


def eval_record(eval_dir: Path, benchmarks: list[str]) -> Record:
    """An evaluation directory (one scored <benchmark>.json each) as an MLflow run."""
    from pgpo.evaluation.benchmarks import headline_mean

    results = {b: read_eval_result(eval_dir, b) for b in benchmarks}
    first = next(iter(results.values()))
    gen = first.generation
    metrics = [(f"avg_at_k.{b}", r.avg_at_k, 0) for b, r in results.items()]
    metrics += [(f"ci95_low.{b}", r.ci95_bootstrap[0], 0) for b, r in results.items()]
    metrics += [(f"ci95_high.{b}", r.ci95_bootstrap[1], 0) for b, r in results.items()]
    mean = headline_mean({b: r.avg_at_k for b, r in results.items()})  # the one headline mean (controls left out)
    if mean is not None:
        metrics.append(("avg_at_k.mean", mean, 0))
    for view in ("pass_at_k", "maj_at_k"):  # the same samples, other questions asked (avg@k stays the paper's)
        metrics += [(f"{view}.{b}", r.extra[view]["mean"], 0) for b, r in results.items() if view in r.extra]
    metrics.append(("failed_generations", sum(r.n_failed for r in results.values()), 0))
    params = {"k": first.k, "backend": gen["backend"]["name"], "checkpoint": gen["checkpoint"],
              **flatten(gen["sampling"], "sampling.")}
    revisions = {b: r.generation["inputs"].get("commit") or r.generation["inputs"].get("split_sha256", "")
                 for b, r in results.items()}
    starts = [r.generation.get("started_at") for r in results.values()]
    ends = [r.generation.get("finished_at") for r in results.values()]
    start = min(starts) if all(starts) else None
    end = max(ends) if all(ends) else None
    tags = {**system_tags("pgpo evaluate", gen["code_version"], gen.get("user")), "code_version": gen["code_version"],
            "lmms_eval": gen["versions"]["lmms_eval"], "checkpoint_hash": first.checkpoint_hash,
            "dataset_revisions": json.dumps(revisions)[:4900]}
    return Record(params, [(k, float(v), s, end) for k, v, s in metrics], tags,
                  [result_path(eval_dir, b) for b in benchmarks], eval_datasets(results), start, end)
