"""Wall time per workflow stage, from the Snakemake `benchmark:` files (printed when a workflow succeeds)."""

from __future__ import annotations

import csv
from pathlib import Path


def stage_times(bench_dir: str | Path, elapsed: float) -> str:
    """Jobs, summed and longest job wall time per stage (first path part under benchmarks/), and the total."""
    stages: dict[str, list[float]] = {}
    root = Path(bench_dir)
    for f in sorted(root.rglob("*.tsv")) if root.exists() else []:
        with open(f) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            stage = f.relative_to(root).parts[0].removesuffix(".tsv")
            stages.setdefault(stage, []).append(float(rows[-1]["s"]))
    lines = ["stage wall times (job seconds, from benchmarks/*.tsv):"]
    for stage, secs in stages.items():
        lines.append(f"  {stage:16s} {len(secs):3d} job(s)  sum {sum(secs):8.1f} s  longest {max(secs):8.1f} s")
    lines.append(f"  this invocation: {elapsed:.1f} s wall")
    return "\n".join(lines)
