"""One writer per run directory (issue 23): a second `pgpo train` on the same --out, or a second `pgpo evaluate` of
the same benchmark into the same --out, refuses, naming the holder. (Evaluation shards of one checkpoint share its
directory and run at once, one benchmark group each: their locks are per benchmark, `.pgpo.<benchmark>.lock`.)

Two trainings on one --out both exited 0 with metrics.jsonl reading steps 1,1,2,2,3,3; the same happened when
only the snakemake process was killed and a rerun overlapped the orphaned job. The lock is an advisory
`fcntl.flock` on `<dir>/.pgpo.lock`, held for the life of the process: the kernel releases it when the holder
exits or is killed (kill -9 included), so a lock left by a dead process is never in the way and is taken over
by the next process without any staleness guess. The file keeps the holder's pid, host, command and start time
for the message. It stays when the process leaves anything else in the directory (removing it could let a
process that opened the old file and one that creates a new one both hold "the lock"); a command that fails before
writing anything removes it again, and the directory if it made it, so a refused command leaves nothing. Linux NFS clients map flock to POSIX byte-range locks held by the server,
so the lock also holds between nodes of a cluster on a shared file system.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from pgpo.util.errors import NOT_WRITABLE, UserError

LOCK_FILE = ".pgpo.lock"
_held: dict[tuple[str, str], tuple[int, bool]] = {}  # (directory, lock file) -> (descriptor, this process made the dir)


def lock_name(part: str | None = None) -> str:
    """The lock file of the whole directory (None) or of one part of it (a benchmark)."""
    return LOCK_FILE if part is None else f".pgpo.{part}.lock"


class RunLocked(UserError):
    """Another live process holds this run directory."""


def holder(directory: str | Path, part: str | None = None) -> dict:
    """What the lock file says about its last holder ({} when unreadable)."""
    try:
        return json.loads((Path(directory) / lock_name(part)).read_text())
    except (OSError, ValueError):
        return {}


def lock_run_dir(directory: str | Path, what: str, part: str | None = None) -> None:
    """Hold `directory` (or one `part` of it: a benchmark) for this process (idempotent), or raise RunLocked naming
    the process that holds it. `what` says what this process is about to do there (for the holder's record)."""
    directory = Path(directory)
    key = (str(directory.resolve()), lock_name(part))
    if key in _held:
        return
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: a file, not a folder: --out takes a folder (move the file aside, or give "
                        "another --out)")
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / lock_name(part), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # before any model loads: a read-only --out
        if e.errno not in NOT_WRITABLE:
            raise
        raise UserError(f"{e.filename}: not writable ({e.strerror}): make it writable, or give another --out") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        h = holder(directory, part)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if "started" in h else "?"
        raise RunLocked(f"{directory}{f' ({part})' if part else ''}: in use by pid {h.get('pid', '?')} on {h.get('host', '?')} ({h.get('what', '?')}, "
                        f"since {since}); wait for it to finish or stop it, or use another --out") from None
    record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "started": time.time(),
              "argv": sys.argv}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[key] = (fd, made)


def release_run_dir(directory: str | Path, part: str | None = None) -> None:
    """Let go of `directory` (or its `part`) before this process exits (the commands' end; tests)."""
    directory = Path(directory)
    fd, made = _held.pop((str(directory.resolve()), lock_name(part)), (None, False))
    if fd is None:
        return
    if all(p.name.startswith(".pgpo") and p.name.endswith(".lock") for p in directory.iterdir()):
        # nothing but locks in it: this command failed before writing anything, and leaves nothing
        (directory / lock_name(part)).unlink(missing_ok=True)
        if made and not any(directory.iterdir()):
            directory.rmdir()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
