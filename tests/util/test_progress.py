"""Progress in log files: plain lines, no tqdm carriage returns, from real `pgpo train` / `pgpo warm-start`
processes whose output is a pipe (as under Snakemake's `> log 2>&1`)."""

import io
import os
import re
import subprocess
import sys

import pytest

from pgpo.config.schema import REPO
from pgpo.util.progress import PlainBar, progress_line


def test_progress_line_format():
    assert progress_line("step", 3, 30, 2.1, "step", "reward 0.410") == "step 3/30 reward 0.410 2.1 s/step eta 57 s"
    assert progress_line("step", 1, 100, 30.0) == "step 1/100 30 s/step eta 50 min"
    assert progress_line("step", 1, 300, 30.0).endswith("eta 2.5 h")
    assert progress_line("make-data", 0, 10, None, "item") == "make-data 0/10"


def test_plain_bar_prints_the_first_update_the_last_and_on_close():
    out = io.StringIO()
    bar = PlainBar(5, "warm-start", "step", every_seconds=1e9, stream=out)
    for _ in range(5):
        bar.update(1)
    bar.close()  # nothing new since the last line: no repeat
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[:2] for line in lines] == [["warm-start", "1/5"], ["warm-start", "5/5"]]
    assert lines[-1].endswith("s/step eta 0 s")
    quiet = io.StringIO()
    bar = PlainBar(3, "x", stream=quiet, disable=True)  # other ranks
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def _run(cmd, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PGPO_PROGRESS", None)
    proc = subprocess.run([sys.executable, "-m", "pgpo.cli", *cmd], capture_output=True, text=True, timeout=600,
                          env=env, cwd=tmp_path, check=False)  # capture_output: stdout and stderr are pipes
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_training_log_has_plain_step_lines_and_no_carriage_returns(tiny_dir, tiny_data, tmp_path):
    sets = {"model.path": tiny_dir, "data.train": tiny_data / "train.jsonl", "rollout.prompts_per_step": 2,
            "rollout.update_prompts": 2, "rollout.num_generations": 2, "rollout.max_completion_length": 4,
            "micro_batch": 4, "max_steps": 2, "save_steps": 1, "threads": 1}
    log = _run(["train", "--method", "grpo", "--config", str(REPO / "workflows/config/train/tiny.yaml"),
                "--out", str(tmp_path / "run"), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]],
               tmp_path)
    assert "\r" not in log, log[-2000:]
    steps = re.findall(r"^step (\d)/2 reward -?\d\.\d{3} [\d.]+ s/step eta (\d+) s$", log, re.MULTILINE)
    assert [s for s, _ in steps] == ["1", "2"] and steps[-1][1] == "0", log[-2000:]
    assert "{'loss'" not in log  # the Trainer's per-step dict printout went with its tqdm callback


@pytest.mark.slow
def test_warm_start_log_has_plain_lines(tiny_dir, tiny_data, tmp_path):
    log = _run(["warm-start", "--model", str(tiny_dir), "--data", str(tiny_data), "--out", str(tmp_path / "w"),
                "--set", "steps=2", "--set", "batch_size=2", "--set", "eval_every=0", "--set", "eval_items=1"],
               tmp_path)
    assert "\r" not in log, log[-2000:]
    assert re.search(r"^warm-start 2/2 [\d.]+ s/step eta 0 s$", log, re.MULTILINE), log[-2000:]


def test_vllm_gets_no_bar_of_its_own_in_plain_mode(monkeypatch):
    """lmms-eval calls vLLM's LLM.chat with use_tqdm left at True; in plain mode (TQDM_DISABLE) vLLM divides by the
    disabled bar's elapsed time 0. The backend's engine is changed to pass use_tqdm=False there, and only there.
    (The real engine under `pgpo evaluate` with piped output: tests/evaluation/test_vllm_cpu.py.)"""
    from pgpo.evaluation.generate import plain_vllm_progress

    class Engine:  # the two LLM methods lmms-eval's vLLM models call, recording the bar argument
        def __init__(self):
            self.calls = []

        def chat(self, messages, sampling_params=None, use_tqdm=True, chat_template=None):
            self.calls.append(("chat", use_tqdm))
            return messages

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            self.calls.append(("generate", use_tqdm))
            return prompts

    monkeypatch.setenv("PGPO_PROGRESS", "plain")
    engine = Engine()
    assert plain_vllm_progress(engine)
    assert engine.chat(["m"], sampling_params=1, chat_template=None) == ["m"] and engine.generate(["p"]) == ["p"]
    assert engine.calls == [("chat", False), ("generate", False)]
    monkeypatch.setenv("PGPO_PROGRESS", "bars")
    engine = Engine()
    assert not plain_vllm_progress(engine)
    engine.chat(["m"])
    assert engine.calls == [("chat", True)]
