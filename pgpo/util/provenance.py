"""What every result file records: config, code version and input hashes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, is_dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout (pgpo/util/provenance.py -> ../..)


def code_version() -> str:
    """git commit of the checkout (with '+dirty' if it has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


DIGEST_CHARS = 16  # every short hash the records carry (a recipe, a checkpoint's files, MLflow dataset digests)


def short_digest(hexdigest: str) -> str:
    """The first DIGEST_CHARS of a hex digest: how hashes are shown and compared in records and tables."""
    return str(hexdigest)[:DIGEST_CHARS]


def config_hash(obj) -> str:
    data = asdict(obj) if is_dataclass(obj) else obj
    return short_digest(hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dir_hash(path: str | Path, patterns=("*.json", "*.safetensors", "*.jsonl")) -> str:
    """sha256 over the files of a checkpoint or data directory matching patterns (names and contents)."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(f for pat in patterns for f in root.glob(pat)):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return short_digest(h.hexdigest())


def machine() -> dict:
    """What the numbers of a run can depend on beyond code and inputs: library versions, the CPU and the kernels
    ATen dispatches to on it (float sums differ between AVX2 and AVX-512 kernels), and the thread count."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "cuda": torch.version.cuda if torch.cuda.is_available() else None}
