"""What every result file records: config, code version and input hashes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, is_dataclass
from pathlib import Path

from pgpo.config import REPO


def code_version() -> str:
    """git commit of the checkout (with '+dirty' if it has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config_hash(obj) -> str:
    data = asdict(obj) if is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dir_hash(path: str | Path, patterns=("*.json", "*.safetensors", "*.jsonl")) -> str:
    """sha256 over the files of a checkpoint or data directory matching patterns (names and contents)."""
    from pgpo.data import sha256_file

    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(f for pat in patterns for f in root.glob(pat)):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()[:16]
