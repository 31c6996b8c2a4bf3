"""Which checkpoint a resume may load: complete means every file of it is whole, not only trainer_state.json
(issue 23).

The Trainer writes trainer_state.json last, so its absence marks a save cut short; but a checkpoint whose
model.safetensors was truncated later (a copy, a disk error, a full disk during a re-save) still had one, and
resuming from it stopped with safetensors' raw `SafetensorError` and no path, while the intact previous checkpoint
was never tried. Each file is checked by its own format's framing, which a cut file cannot satisfy, without
loading a tensor: a safetensors file's size must equal 8 + its header length + the end of its last tensor's data;
a torch.save file (optimizer.pt, scheduler.pt, rng_state*.pth, training_args.bin) is a zip archive whose central
directory sits at its end; JSON files parse. Sharded weights are checked shard by shard (their index parses too).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

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


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """None if the checkpoint is complete; else the first problem, naming its file."""
    ckpt = Path(checkpoint)
    if not (ckpt / "trainer_state.json").is_file():
        return "no trainer_state.json (the Trainer writes it last: killed or out of disk while saving)"
    for path in sorted(ckpt.rglob("*")):  # DeepSpeed's global_step*/ too
        if path.is_file():
            problem = file_problem(path)
            if problem:
                return f"{path.relative_to(ckpt)}: {problem}"
    return None
