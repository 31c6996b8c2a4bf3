"""Running the workflow as a user does: `<venv python> -m snakemake`, the venv not on PATH (test_workflow,
test_slurm and the session fixture in conftest.py share it)."""

import os
import subprocess
import sys
from pathlib import Path

from pgpo.config.schema import REPO

QUICK = str(REPO / "workflows/config/quick.yaml")
PAPER = str(REPO / "workflows/config/paper.yaml")


def unactivated_path() -> str:
    """PATH without any directory holding a `pgpo` script: the workflow must not need an activated venv."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "pgpo").exists()]
    return os.pathsep.join(keep)


def snakemake_cmd(workdir, *args, snakefile=REPO / "Snakefile") -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir), *args]


def snakemake_env(env=None) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": unactivated_path(), **(env or {})}


def snakemake(workdir, *args, timeout=900, snakefile=REPO / "Snakefile", check=True, env=None):
    """`<venv python> -m snakemake` with the venv NOT on PATH (as `.venv/bin/snakemake` run unactivated)."""
    # cwd = workdir: `python -m` puts the working directory first on sys.path
    proc = subprocess.run(snakemake_cmd(workdir, *args, snakefile=snakefile), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=workdir, env=snakemake_env(env))
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def copy_tree(work: Path, dst: Path) -> Path:
    """The finished results/ as hard links (fast), with every file under 4 MB copied, so a job rewriting one in
    place cannot reach the session's tree (the large files are weights the jobs here only read)."""
    subprocess.run(["cp", "-al", str(work / "results"), str(dst / "results")], check=True)
    for path in (dst / "results").rglob("*"):
        if path.is_file() and path.stat().st_size < 4 * 2**20:
            data = path.read_bytes()
            path.unlink()
            path.write_bytes(data)
    return dst
