"""Reading the JSON files the project and its stages write, in one place (issue 23): a missing, cut or
wrong-shaped file is one line naming the file and the command that writes it again, never a bare
`JSONDecodeError` or `KeyError` from deep inside a reader.

Every file the project writes goes through `pgpo.util.atomic.write_atomic`, so a cut file means a copy, a disk
or an editor broke it; the fix is to write it again (the `writer` the caller names) or restore it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgpo.util.errors import DataError


class CorruptFile(DataError):
    """A file the project wrote that cannot be read back (not JSON, or not the shape its writer writes)."""


def read_json(path: str | Path, writer: str, kind: type = dict, what: str = "") -> Any:
    """The JSON value of `path`, which must be a `kind` (dict or list). `writer`: the command that writes the file
    (named in the error: the fix); `what`: what the file is, for the message. A missing file is a
    FileNotFoundError naming the writer; unreadable bytes or another shape a CorruptFile."""
    path = Path(path)
    label = f"a broken {what}" if what else "a broken file"
    if path.is_dir():
        raise CorruptFile(f"{path}: a folder where {what or 'a JSON file'} is expected (give the file; {writer} "
                          "writes it)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing {what or 'file'} ({writer} writes it)")
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f", line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        reason = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise CorruptFile(f"{path}: not JSON ({reason}{where}): {label}; {writer} writes it again "
                          "(or restore it from a copy)") from None
    if not isinstance(value, kind):
        raise CorruptFile(f"{path}: expected a JSON {kind.__name__}, got {type(value).__name__}: {label}; "
                          f"{writer} writes it again")
    return value


def adapter_base(model_dir: str | Path) -> str | None:
    """The base model a LoRA adapter folder names (adapter_config.json's base_model_name_or_path: a folder or a hub
    id), None for a full model folder. A LoRA training's checkpoints are adapter folders (pgpo.training.lora)."""
    adapter = Path(model_dir) / "adapter_config.json"
    if not adapter.is_file():
        return None
    return str(field(read_json(adapter, "PEFT's save_pretrained (a LoRA training's checkpoint)",
                               what="adapter config"), adapter, "base_model_name_or_path"))


def field(value: dict, path: str | Path, *keys: str) -> Any:
    """value[keys[0]][keys[1]]..., a CorruptFile naming the file and the missing key path when absent."""
    cur = value
    for i, key in enumerate(keys):
        if not isinstance(cur, dict) or key not in cur:
            raise CorruptFile(f"{path}: missing field {'.'.join(keys[:i + 1])!r}")
        cur = cur[key]
    return cur
