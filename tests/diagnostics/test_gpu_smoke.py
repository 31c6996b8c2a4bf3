"""scripts/gpu_smoke.sh on CPU: its syntax, its list of checks, its --cpu-dry mode (the checks a CPU can run),
that a failing check fails the script, and the blind-pass comparison it runs on the GPU (here in fp32)."""

import os
import subprocess

import pytest

from pgpo.config.schema import REPO

SCRIPT = REPO / "scripts" / "gpu_smoke.sh"
CHECKS = ["install", "build_tiny", "train_pgpo", "train_vppo", "train_papo", "eval_vllm", "blind_bf16",
          "blind_fp32", "known_bugs"]


def _run(*args, python="python", timeout=300):
    env = {**os.environ, "PGPO_PYTHON": python, "PYTHONPATH": str(REPO)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          cwd=REPO)


def test_the_script_parses_and_lists_every_check():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    listed = _run("--list")
    assert listed.returncode == 0 and listed.stdout.split() == CHECKS


def _results(stdout: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in stdout.splitlines()
            if line.split()[:1] and line.split()[0] in ("PASS", "FAIL", "SKIP")}


@pytest.mark.slow
def test_cpu_dry_runs_what_a_cpu_can_and_validates_the_gpu_commands(tmp_path):
    done = _run("--cpu-dry", "--work", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _results(done.stdout) == {"install": "SKIP", "build_tiny": "PASS", "train_pgpo": "PASS",
                                     "train_vppo": "PASS", "train_papo": "PASS", "eval_vllm": "PASS",
                                     "blind_bf16": "SKIP", "blind_fp32": "PASS", "known_bugs": "PASS"}
    assert done.stdout.splitlines()[-1] == \
        f"gpu_smoke: 7 passed, 0 failed, 2 skipped (cpu-dry); logs in {tmp_path}/logs"
    known = (tmp_path / "logs" / "known_bugs.log").read_text()
    assert known.count("PASS ") == 3 and "right padding flagged" in known and "0.9x8: 6.0e-04" in known
    # the commands the GPU run executes, as validated: vLLM colocate rollouts in bf16, 3 steps; vLLM eval, 4 questions
    for method in ("pgpo", "vppo", "papo"):
        log = (tmp_path / "logs" / f"train_{method}.log").read_text()
        for setting in ("'rollout.use_vllm=true'", "'rollout.vllm_mode=colocate'", "'model.dtype=bfloat16'",
                        "'max_steps=3'"):
            assert setting in log, (method, setting)
    log = (tmp_path / "logs" / "eval_vllm.log").read_text()
    assert "'backend.name=vllm'" in log and "'limit=4'" in log
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "data" / "train.jsonl").exists()


def test_a_failing_check_fails_the_script(tmp_path):
    done = _run("--cpu-dry", "--work", str(tmp_path), python="false", timeout=60)
    assert done.returncode == 1
    assert _results(done.stdout)["build_tiny"] == "FAIL" and "blind_fp32" in _results(done.stdout)
    assert f"FAIL build_tiny (exit 1; log {tmp_path}/logs/build_tiny.log)" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("gpu_smoke: 0 passed, 7 failed, 2 skipped")


@pytest.mark.slow
def test_blind_pass_equals_the_forward_without_the_visual_span(tiny_dir, tiny_data):
    from pgpo.diagnostics.blind_check import check

    result = check(str(tiny_dir), str(tiny_data), tol=1e-4)
    assert result["passed"] and result["max_abs_diff"] < 1e-4 and result["rows"] == 4
    # the comparison is sharp enough to fail: positions renumbered after the deletion differ by far more
    assert result["renumbered_positions_diff"] > 1e-3
