"""Files appear whole or not at all (issue 23): a process killed while writing leaves the previous version."""

import json
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.records.stages import RunRecord, read_run, write_run
from pgpo.util.atomic import write_atomic

KILLED_WHILE_WRITING = """
import os, signal, sys
from pgpo.util import atomic
real = os.fsync
def die(fd):  # the new content is written to the temporary file but not yet renamed over the target
    os.kill(os.getpid(), signal.SIGKILL)
atomic.os.fsync = die
atomic.write_atomic(sys.argv[1], sys.argv[2])
"""


def test_a_process_killed_mid_write_leaves_the_previous_version(tmp_path):
    target = tmp_path / "run.json"
    target.write_text('{"version": 1}')
    proc = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(target), '{"version": 2, "half'],
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"version": 1}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run.json"]
    assert all(name.startswith(".run.json.") and name.endswith(".tmp") for name in leftovers), leftovers
    assert list(tmp_path.glob("*.json")) == [target]  # the project's globs never see the temporary file


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    from pgpo.util import atomic

    target = tmp_path / "table.md"
    target.write_text("old")

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.md"]


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.floats(allow_nan=False)),
                       max_size=6))
def test_a_run_record_reads_back_what_was_written(tmp_path_factory, extra):
    run = tmp_path_factory.mktemp("run")
    write_run(run, RunRecord(method={"name": "grpo"}, config={"seed": 0}, config_hash="abc", finished=True,
                             extra={f"x_{k}": v for k, v in extra.items()}))
    back = read_run(run)
    assert back.extra == {f"x_{k}": v for k, v in extra.items()}
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
