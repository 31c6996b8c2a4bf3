"""One writer per run directory (issue 23): a second `pgpo train` or `pgpo evaluate` on the same --out refuses,
naming the holder.

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

from pgpo.util.errors import UserError

LOCK_FILE = ".pgpo.lock"
_held: dict[str, tuple[int, bool]] = {}  # resolved directory -> (open descriptor, whether this process made it)


class RunLocked(UserError):
    """Another live process holds this run directory."""


def holder(directory: str | Path) -> dict:
    """What the lock file says about its last holder ({} when unreadable)."""
    try:
        return json.loads((Path(directory) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}


def lock_run_dir(directory: str | Path, what: str) -> None:
    """Hold `directory` for this process (idempotent), or raise RunLocked naming the process that holds it.
    `what` says what this process is about to do there (for the holder's record)."""
    directory = Path(directory)
    key = str(directory.resolve())
    if key in _held:
        return
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        h = holder(directory)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if "started" in h else "?"
        raise RunLocked(f"{directory}: in use by pid {h.get('pid', '?')} on {h.get('host', '?')} ({h.get('what', '?')}, "
                        f"since {since}); wait for it to finish or stop it, or use another --out") from None
    record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "started": time.time(),
              "argv": sys.argv}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[key] = (fd, made)


def release_run_dir(directory: str | Path) -> None:
    """Let go of `directory` before this process exits (tests; a long-lived process done with a run)."""
    directory = Path(directory)
    fd, made = _held.pop(str(directory.resolve()), (None, False))
    if fd is None:
        return
    if [p.name for p in directory.iterdir()] == [LOCK_FILE]:  # failed before writing anything: leave nothing
        (directory / LOCK_FILE).unlink()
        if made:
            directory.rmdir()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
