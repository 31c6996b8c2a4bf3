"""One writer per run directory (issue 23): a second process on the same --out refuses with the holder's pid and
host, before any model loads; a lock left by a killed process is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pgpo.cli import main
from pgpo.config.schema import REPO
from pgpo.training import run as train_module
from pgpo.util.run_lock import LOCK_FILE, RunLocked, lock_run_dir, release_run_dir

HOLD = ("import sys, time\nfrom pgpo.util.run_lock import lock_run_dir\n"
        "lock_run_dir(sys.argv[1], 'a test holder', part=sys.argv[2] if len(sys.argv) > 2 else None)\n"
        "print('held', flush=True)\ntime.sleep(600)\n")


def hold(run, *part):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), *part], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(tmp_path):
    """A live process (not this one) holding tmp_path/run; killed with SIGKILL at the end if still alive."""
    run = tmp_path / "run"
    proc = hold(run)
    yield run, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_held_directory_refuses_naming_the_holder(held):
    run, proc = held
    with pytest.raises(RunLocked, match=rf"{run}: in use by pid {proc.pid} on {socket.gethostname()} "
                                        r"\(a test holder, since .*\); wait for it"):
        lock_run_dir(run, "a second writer")


def test_a_lock_left_by_a_killed_process_is_taken_over(held):
    run, proc = held
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid  # the dead holder's record is still there
    lock_run_dir(run, "the next writer")
    try:
        record = json.loads((run / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["what"] == "the next writer"
        lock_run_dir(run, "again")  # idempotent within one process
    finally:
        release_run_dir(run)


def test_only_one_of_many_racing_processes_gets_the_lock(tmp_path):
    code = ("import sys\nfrom pgpo.util.run_lock import lock_run_dir, RunLocked\n"
            "try:\n    lock_run_dir(sys.argv[1], 'racer')\nexcept RunLocked:\n    print('refused'); sys.exit(0)\n"
            "print('won', flush=True)\nimport time; time.sleep(3)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outcomes = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outcomes == ["refused"] * 3 + ["won"]


def test_a_second_training_on_the_same_out_refuses_before_the_model_loads(held, tiny_dir, tiny_data, capsys,
                                                                         monkeypatch):
    run, proc = held

    def forbidden(*_, **__):
        raise AssertionError("the model was loaded although another process holds the run directory")

    monkeypatch.setattr(train_module, "build_trainer", forbidden)
    rc = main(["train", "--method", "grpo", "--config", str(REPO / "workflows/config/train/tiny.yaml"), "--out",
               str(run), "--set", f"model.path={tiny_dir}", "--set", f"data.train={tiny_data / 'train.jsonl'}"])
    assert rc == 2
    assert f"in use by pid {proc.pid}" in capsys.readouterr().err
    assert not (run / "run.json").exists()


def test_a_second_evaluation_of_a_benchmark_on_the_same_out_refuses_before_the_model_loads(tiny_dir, tiny_data,
                                                                                         tmp_path, capsys,
                                                                                         monkeypatch):
    from pgpo.evaluation import generate

    run = tmp_path / "run"
    proc = hold(run, "tiny_bars")

    def forbidden(*_, **__):
        raise AssertionError("the model was loaded although another process holds the run directory")

    monkeypatch.setattr(generate, "build_model", forbidden)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        rc = main(["evaluate", "--checkpoint", str(tiny_dir), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
                   "--out", str(run)])
        assert rc == 2
        assert f"{run} (tiny_bars): in use by pid {proc.pid}" in capsys.readouterr().err
        assert not (run / "samples").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_shards_of_one_checkpoint_share_its_directory(tmp_path):
    """The workflow runs one evaluation job per shard into the same directory at once: other benchmarks are free."""
    run = tmp_path / "run"
    proc = hold(run, "geo3k")
    try:
        lock_run_dir(run, "another shard", part="mmk12")
        with pytest.raises(RunLocked, match=r"\(geo3k\): in use"):
            lock_run_dir(run, "the same shard again", part="geo3k")
        release_run_dir(run, part="mmk12")
        assert (run / ".pgpo.geo3k.lock").exists() and not (run / ".pgpo.mmk12.lock").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_lock_is_released_when_the_holder_exits(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(run)], check=True,
                   capture_output=True, timeout=120)
    start = time.time()
    lock_run_dir(run, "after a clean exit")
    release_run_dir(run)
    assert time.time() - start < 5
