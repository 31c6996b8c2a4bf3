# Helpers shared by every rule file: config validation, paths, the method list, run names.
import json
import shlex
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, validate

validate(config, "../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
ROOT = config["root"]
PROFILE = config["profile"]


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


def resources_of(kind):
    r = config["resources"][kind]
    return {"gpu": r.get("gpus", 0), "runtime": r.get("runtime_min", 60), "mem_mb": r.get("mem_mb", 4000)}
