"""Files appear whole or not at all (issue 23): a process killed mid-write, or a full disk, leaves the previous
version (or nothing), never half a JSON document that every later command trips over.

The text goes to a temporary file in the same directory (the same file system, so the rename is atomic), is
flushed to disk, then renamed over the target. Readers never see the temporary name's content under the real
name; a leftover temporary file (killed between write and rename) is named `.<name>.<pid>.tmp` and ignored by
every glob of the project (they match `*.json`, `*.jsonl`, `checkpoint-*`, not dotfiles).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write `text` (str as UTF-8, or bytes) to `path` atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode() if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
