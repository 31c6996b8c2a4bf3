"""Whether a file the project or the Trainer wrote is whole, by its own format's framing, without loading it
(issue 23): a safetensors file's size must equal 8 + its header length + the end of its last tensor's data; a
torch.save file (optimizer.pt, scheduler.pt, rng_state*.pth, training_args.bin) is a zip archive whose central
directory sits at its end; JSON files parse. A cut file cannot satisfy its framing. Used for checkpoints before a
resume (pgpo.training.checkpoints) and for model directories before a model loads (training's model.path,
evaluation's checkpoint), where a cut model.safetensors stopped with safetensors' raw error and no path."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from pgpo.util.jsonfile import CorruptFile

ZIP_FILES = ("*.pt", "*.pth", "*.bin")


def safetensors_problem(path: Path) -> str | None:
    """None if the file's size matches its header; else what is wrong."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes: shorter than the 8-byte header length"
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            return f"header of {n} bytes in a file of {size}"
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            return f"unreadable header ({e})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    return None if size == expected else f"{size} bytes, its header describes {expected}"


def file_problem(path: Path) -> str | None:
    """None if `path` is whole by its format's framing (see the module docstring); else what is wrong."""
    try:
        if path.suffix == ".safetensors":
            return safetensors_problem(path)
        if path.suffix == ".json":
            json.loads(path.read_text())
            return None
        if any(path.match(p) for p in ZIP_FILES):
            if not zipfile.is_zipfile(path):
                return "not a complete torch.save archive (no zip central directory at its end)"
            with zipfile.ZipFile(path) as z:
                z.infolist()
            return None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        return f"unreadable ({e})"
    return None


def model_dir_problem(model_dir: str | Path) -> str | None:
    """None if every weight, torch.save and JSON file of a model directory is whole; else the first problem,
    naming its file (path inside the directory)."""
    root = Path(model_dir)
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            problem = file_problem(path)
            if problem:
                return f"{path.relative_to(root)}: {problem}"
    return None


def check_model_dir(model_dir: str | Path, fix: str) -> None:
    """CorruptFile naming the first damaged file of a local model directory and `fix` (before it loads)."""
    problem = model_dir_problem(model_dir)
    if problem:
        raise CorruptFile(f"{Path(model_dir) / problem}: the model directory is damaged; {fix}")
