"""Where the wall time of a workflow target went: Snakemake's per-job benchmark files summed per rule, beside the
invocation's own wall time, and the lower bound of packing those jobs on the cores used.

    python benchmarks/workflow_job_times.py <root>/benchmarks/testbed --wall 5858 --cores 2 [--json out.json]

Each job's `s` column (wall seconds of the job) is read from its .tsv; jobs are grouped by the file name's prefix
up to the first '-' (testbed: train, record, diagnostic, table, claims). The packing bound is sum(job seconds x
threads) / cores, with a job's threads taken from --threads RULE=N (default 1): no schedule on those cores can
finish sooner, so wall - bound is what the schedule (and the start of Snakemake itself) cost.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def job_seconds(root: Path) -> dict[str, list[float]]:
    """{group: [seconds of each job]} from every .tsv under root (group = the sub-folder, else the name prefix)."""
    out: dict[str, list[float]] = {}
    for tsv in sorted(root.rglob("*.tsv")):
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        group = tsv.parent.name if tsv.parent != root else tsv.stem.split("-")[0]
        out.setdefault(group, []).append(float(rows[-1]["s"]))  # the last attempt of a rerun job
    return out


def summary(root: Path, wall: float | None, cores: int, threads: dict[str, int]) -> dict:
    jobs = job_seconds(root)
    per = {g: {"n": len(v), "sum": round(sum(v), 1), "min": round(min(v), 1), "max": round(max(v), 1)}
           for g, v in jobs.items()}
    bound = sum(sum(v) * threads.get(g, 1) for g, v in jobs.items()) / cores
    out = {"root": str(root), "cores": cores, "threads": threads, "job_seconds": per,
           "packing_bound_seconds": round(bound, 1)}
    if wall is not None:
        out.update(wall_seconds=wall, schedule_loss_seconds=round(wall - bound, 1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="a folder of Snakemake benchmark .tsv files (searched recursively)")
    p.add_argument("--wall", type=float, help="the invocation's wall seconds")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--threads", nargs="*", default=[], help="RULE=N: threads of that group's jobs (default 1)")
    p.add_argument("--json", type=Path, help="also write the summary here")
    a = p.parse_args(argv)
    threads = {k: int(v) for k, v in (t.split("=", 1) for t in a.threads)}
    result = summary(a.root, a.wall, a.cores, threads)
    for group, s in result["job_seconds"].items():
        print(f"{group:12s} {s['n']:3d} jobs  {s['sum']:8.1f} s  ({s['min']:.1f}-{s['max']:.1f} s each)")
    print(f"packing bound on {a.cores} cores: {result['packing_bound_seconds']:.0f} s "
          f"({result['packing_bound_seconds'] / 60:.1f} min)")
    if a.wall is not None:
        print(f"wall {a.wall:.0f} s ({a.wall / 60:.1f} min); schedule and start-up: {result['schedule_loss_seconds']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
