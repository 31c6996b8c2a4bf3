"""The workflow's training-data preparation step (paper profile), planned from the workflow config.

A profile with a ``prepare_data`` block (workflows/config/paper.yaml) gets one `prepare_train_data` job
(workflows/rules/prepare.smk) that runs ``pgpo prepare <dataset> --src <src> --out <out>`` before any training,
and every training job reads the split it writes (``--set data.train=<out>/train.jsonl``, so the recipe and the
prepared data cannot point at different files). Profiles without the block (tiny, quick) plan nothing: they
generate their own data. The rules only place what this returns.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pgpo.config.schema import ConfigError

DATASETS = ("virl39k",)  # the `pgpo prepare` converters
OUTPUT_FILES = ("train.jsonl", "MANIFEST.json", "prepare_report.json")


@dataclass(frozen=True)
class PreparePlan:
    """One preparation job: what it writes, its command-line arguments, and what every training then reads."""

    dataset: str
    outputs: list[str]  # out/train.jsonl, out/MANIFEST.json, out/prepare_report.json (paths of the workdir)
    args: str  # `pgpo prepare` arguments, shell-quoted
    train_set: dict  # --set overrides of every training job: {'data.train': out/train.jsonl}


def plan(config: dict) -> PreparePlan | None:
    """The preparation job of a (schema-validated, defaults filled) workflow config, or None without one."""
    block = config.get("prepare_data")
    if block is None:
        return None
    missing = [k for k in ("dataset", "src", "out", "revision", "max_rejected_fraction") if k not in block]
    if missing:  # Snakemake's validate fills the schema's defaults; a config used without it must spell them out
        raise ConfigError(f"prepare_data: missing {missing} (workflows/schemas/config.schema.yaml has the defaults)")
    if block["dataset"] not in DATASETS:
        raise ConfigError(f"prepare_data.dataset: {block['dataset']!r} is not one of {list(DATASETS)}")
    if config.get("build_tiny"):
        raise ConfigError("prepare_data: a profile that builds the tiny model trains on its generated data; "
                          "remove prepare_data or build_tiny")
    out = str(block["out"]).rstrip("/")
    args = [block["dataset"], "--src", str(block["src"]), "--out", out,
            "--max-rejected-fraction", str(block["max_rejected_fraction"])]
    if block["revision"]:
        args += ["--revision", str(block["revision"])]
    return PreparePlan(block["dataset"], [f"{out}/{name}" for name in OUTPUT_FILES],
                       " ".join(shlex.quote(a) for a in args), {"data.train": f"{out}/train.jsonl"})
