# Helpers for all the .smk files: config validation, paths, the method list, run names, table specs.
import json
import shlex
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, validate

from pgpo.launch import bind
from pgpo.prepare import plan as prepare_plan

validate(config, "../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
ROOT = config["root"]
PROFILE = config["profile"]
# the pgpo of the interpreter running Snakemake (an unactivated .venv/bin/snakemake works); `launch` is bound too
PGPO = bind("pgpo")


def repo_path(p):
    """Config paths are relative to the repository, whatever the working directory."""
    return str(p) if Path(p).is_absolute() else str(REPO / p)


def methods():
    if config["methods"] == "all":
        return sorted(p.stem for p in (REPO / "baselines").glob("*.yaml"))
    return list(config["methods"])


SIZES = list(config["sizes"])
SEEDS = list(config["seeds"])


def start_model(size):
    return config["sizes"][size]["model"].format(root=ROOT)


def sets(overrides, flag="--set"):
    """{'a.b': 1} -> '--set a.b=1' (values as YAML scalars, shell-quoted)."""
    return " ".join(f"{flag} {shlex.quote(f'{k}={json.dumps(v) if isinstance(v, bool) else v}')}"
                    for k, v in overrides.items())


def benchmarks():
    """Benchmark names the evaluation shards cover, in table order."""
    from pgpo.evaluation.benchmarks import resolve

    return [b.name for b in resolve(config["eval_shards"])]


def eval_outputs(size, run):
    return [f"{ROOT}/eval/{size}/{run}/shard-{s}.json" for s in config["eval_shards"]]


def train_runs():
    """(size, method, seed) of every Table 1 run."""
    return [(size, m, s) for size in SIZES for m in methods() for s in SEEDS]


ABLATION = Paramspace(pd.read_csv(repo_path(config["ablation"]["grid"]), sep="\t", dtype=str)) \
    if "ablation" in config else None


def ablation_runs():
    return [(size, p, s) for size in SIZES for p in ABLATION.instance_patterns for s in config["ablation"]["seeds"]]


def warm_start_marker():
    return [f"{ROOT}/model/warmstart/warmstart.json"] if config.get("build_tiny") else []


def tiny_data_set():
    """The tiny profile trains on its own generated split (the recipe's default path assumes results/tiny)."""
    return {"data.train": f"{ROOT}/data/train.jsonl"} if config.get("build_tiny") else {}


# the paper profile converts its downloaded training set first (pgpo.prepare plans the job; None elsewhere)
PREPARE = prepare_plan(config)


def prepared_data():
    """Inputs of every training job: the prepared split, where the profile prepares one."""
    return [PREPARE.outputs[0]] if PREPARE else []


def train_data_set():
    """--set overrides naming the training split: the tiny profile's generated one or the prepared one."""
    return {**tiny_data_set(), **(PREPARE.train_set if PREPARE else {})}


def resources_of(kind):
    r = config["resources"].get(kind, {})
    return {"gpu": r.get("gpus", 0), "runtime": r.get("runtime_min", 60), "mem_mb": r.get("mem_mb", 4000)}


def variant_of(pattern):
    """'variant~pgpo/tau~0.4/...' -> 'pgpo'."""
    return Path(pattern).parts[0].split("~", 1)[1]


# evaluation: eval directories mirror the runs (eval/<size>/base, eval/<size>/<method>-s<seed>, eval/<size>/ablation/...)
def checkpoint_marker(wc):
    if wc.run == "base":
        return warm_start_marker()
    if wc.run.startswith("ablation/"):
        return [f"{ROOT}/ablation/{wc.size}/{wc.run[len('ablation/'):]}/run.json"]
    return [f"{ROOT}/runs/{wc.size}/{wc.run}/run.json"]


def checkpoint_dir(wc):
    return start_model(wc.size) if wc.run == "base" else str(Path(checkpoint_marker(wc)[0]).parent / "final")


def checkpoint_revision(wc):
    """--revision <commit> for a base row whose start model is a pinned hub id (sizes.<size>.revision)."""
    revision = config["sizes"][wc.size].get("revision")
    return f"--revision {revision}" if wc.run == "base" and revision else ""


# tables and tracking
def run_label(size, name):
    return name if len(SIZES) == 1 else f"{size} {name}"


def table_rows(target):
    """Row label -> eval directories (one per seed) of a target."""
    rows = {}
    if target in ("table1", "table7"):
        keep = methods() if target == "table1" else config.get("table7", [])
        for size in SIZES:
            rows[run_label(size, "base")] = [f"{ROOT}/eval/{size}/base"]
            for m in keep:
                rows[run_label(size, m)] = [f"{ROOT}/eval/{size}/{m}-s{s}" for s in SEEDS]
    else:
        for size in SIZES:
            for pattern in ABLATION.instance_patterns:
                variant = variant_of(pattern)
                rows[run_label(size, variant)] = [f"{ROOT}/eval/{size}/ablation/{pattern}/s{s}"
                                                  for s in config["ablation"]["seeds"]]
    return rows


def trainings(target):
    """Name -> training run directory, with labels (size, method, seed, variant) for MLflow params."""
    out, labels = {}, {}
    if target in ("table1", "table7"):
        keep = methods() if target == "table1" else config.get("table7", [])
        for size, m, s in train_runs():
            if m in keep:
                name = f"{size}/{m}-s{s}"
                out[name] = f"{ROOT}/runs/{name}"
                labels[name] = {"size": size, "method": m, "seed": s}
    else:
        for size, pattern, s in ablation_runs():
            name = f"{size}/{pattern}/s{s}"
            out[name] = f"{ROOT}/ablation/{name}"
            labels[name] = {"size": size, "method": config["ablation"]["method"], "seed": s,
                            "variant": variant_of(pattern)}
    return out, labels


def target_inputs(target):
    runs, _ = trainings(target)
    dirs = [d for ds in table_rows(target).values() for d in ds]
    shards = [f"{d}/shard-{s}.json" for d in dirs for s in config["eval_shards"]]
    return [f"{d}/run.json" for d in runs.values()] + shards


def track_spec(target):
    runs, labels = trainings(target)
    evals = {str(Path(d).relative_to(ROOT)): d for ds in table_rows(target).values() for d in ds}
    return json.dumps({"root": ROOT, "target": target, "benchmarks": benchmarks(), "trainings": runs,
                       "evaluations": evals, "labels": labels})


def table_spec(target, title):
    runs, labels = trainings(target)
    return json.dumps({"root": ROOT, "target": target, "title": title, "rows": table_rows(target),
                       "trainings": runs, "labels": labels, "warmstart": (warm_start_marker() or [None])[0],
                       "benchmarks": benchmarks(), "average_over": config["average_over"],
                       "tracking": f"{ROOT}/tracking/{target}.json", "out": f"{ROOT}/{target}"})


TITLES = {"table1": f"Table 1 ({PROFILE} profile)", "table7": f"Table 7: PGPO on GRPO ({PROFILE} profile)",
          "ablation_thresholds": f"Threshold and modulation ablation ({PROFILE} profile)"}
