"""`pgpo train` as a process, as users run it: the command line of a short tiny run, running it, and killing it
the moment a checkpoint is complete (tests/training/test_faults.py, tests/training/test_lora.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pgpo.config.schema import REPO

RECIPE = str(REPO / "workflows/config/train/tiny.yaml")
STEPS = 4


def train_cmd(tiny_dir, tiny_data, out, method, *extra, steps: int = STEPS):
    """`python -m pgpo.cli train` of `method` for `steps` steps on the tiny model and data, checkpoint every step;
    `extra`: more command-line arguments (e.g. "--set", "model.lora.rank=4")."""
    sets = {"model.path": tiny_dir, "data.train": tiny_data / "train.jsonl", "rollout.prompts_per_step": 4,
            "rollout.update_prompts": 4, "rollout.num_generations": 4, "rollout.max_completion_length": 8,
            "micro_batch": 8, "max_steps": steps, "save_steps": 1, "save_total_limit": 2, "threads": 1,
            "samples.every": 1}  # rollouts logged at every step: a resumed run must log the same
    cmd = [sys.executable, "-m", "pgpo.cli", "train", "--method", method, "--config", RECIPE, "--seed", "0",
           "--out", str(out)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + list(extra)


def run(cmd, check=True):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def kill_at_checkpoint(cmd, out: Path, step: int):
    """Start training and SIGKILL it as soon as checkpoint-<step> is complete (the weights have moved by then)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (out / f"checkpoint-{step}" / "trainer_state.json").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists(), "killed too late: the run had finished"


def straight_runs(tiny_dir, tiny_data, tmp_path_factory, methods, *extra, steps: int = STEPS) -> dict:
    """method -> the output folder of its uninterrupted run (the reference a killed-and-resumed run must equal)."""
    outs = {}
    for method in methods:
        outs[method] = tmp_path_factory.mktemp(f"straight-{method}")
        run(train_cmd(tiny_dir, tiny_data, outs[method], method, *extra, steps=steps))
    return outs
