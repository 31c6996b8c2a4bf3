"""The quick DAG (reproduce_table1) through the local executor and through the Slurm executor, back to back.

Each run starts from an empty working directory, so both do the whole DAG (tiny model, data, warm start, 12
trainings, 13 evaluations, tracking, table). The Slurm run uses profiles/slurm-local on the one-node cluster of
scripts/slurm_local.sh (brought up here unless it is up already, and then taken down again), with the same cores
(the node's CPUs = this machine's). Printed: both wall times, their ratio, the load average before and after each
run (other work on the machine slows both), and whether table1.csv is equal in every column but the MLflow ids.
Needs root and the Debian packages (bash scripts/slurm_local.sh install).

    python benchmarks/slurm_vs_local.py [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "workflows/config/quick.yaml")
SCRIPT = str(REPO / "scripts/slurm_local.sh")


def run(workdir: Path, *args: str) -> dict:
    workdir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "reproduce_table1", "--configfile", QUICK, *args]
    load_before = os.getloadavg()
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"wall_s": round(wall, 1), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "slurm_jobs": len(re.findall(r"has been submitted with SLURM jobid \d+", proc.stdout + proc.stderr))}


def table(workdir: Path) -> list[dict]:
    rows = csv.DictReader((workdir / "results/quick/table1.csv").read_text().splitlines())
    return [{k: v for k, v in r.items() if k != "mlflow_run_ids"} for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", help="working directory (default: a temporary one)")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="slurm_vs_local."))
    was_up = subprocess.run(["bash", SCRIPT, "status"], capture_output=True, check=False).returncode == 0
    subprocess.run(["bash", SCRIPT, "up"], check=True)
    try:
        local = run(work / "local", "--cores", str(os.cpu_count()))
        slurm = run(work / "slurm", "--profile", str(REPO / "profiles/slurm-local"))
    finally:
        if not was_up:
            subprocess.run(["bash", SCRIPT, "down"], check=False)
    a_rows, b_rows = table(work / "local"), table(work / "slurm")
    diff = [(x["row"], x["column"]) for x, y in zip(a_rows, b_rows) if x != y]
    result = {"local": local, "slurm": slurm, "ratio": round(slurm["wall_s"] / local["wall_s"], 2),
              "table_rows": len(a_rows), "table_equal_but_mlflow_ids": a_rows == b_rows, "differing_cells": diff}
    print(f"quick DAG, reproduce_table1, {os.cpu_count()} cores")
    print(f"  local executor : {local['wall_s']:7.1f} s  (load before {local['load_before']}, after {local['load_after']})")
    print(f"  Slurm executor : {slurm['wall_s']:7.1f} s  ({slurm['slurm_jobs']} Slurm jobs; load before "
          f"{slurm['load_before']}, after {slurm['load_after']})")
    print(f"  ratio Slurm / local: {result['ratio']}")
    print(f"  table1.csv: {len(a_rows)} rows, equal in every column but the MLflow ids: "
          f"{result['table_equal_but_mlflow_ids']}" + (f" (differ: {diff})" if diff else ""))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
