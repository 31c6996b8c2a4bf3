"""Commands that only read YAML import no model code (issue 25: `pgpo methods` took 16 s, a no-op `snakemake` 11 s
of CPU, all of it torch, transformers and what they pull in). Each check runs in a fresh interpreter: in the test
process the model stack is long imported."""

import ast
import subprocess
import sys

from workflow_run import snakemake_cmd, snakemake_env

from pgpo.config.schema import REPO
from pgpo.util.lazy import LazyModule

HEAVY = ("torch", "transformers", "trl", "mlflow", "lmms_eval", "peft", "accelerate", "vllm", "deepspeed")
REPORT = f"import sys; print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))"


def _heavy(proc: subprocess.CompletedProcess) -> list[str]:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY ")]
    assert len(lines) == 1, (proc.stdout + proc.stderr)[-3000:]
    return ast.literal_eval(lines[0][len("HEAVY "):])  # the list REPORT printed


def test_listing_methods_and_benchmarks_imports_no_model_code():
    code = ("from pgpo.cli import main\n"
            "assert [main(['methods']), main(['methods', '--fields']), main(['benchmarks'])] == [0, 0, 0]\n" + REPORT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pgpo " in proc.stdout and "perception_kl" in proc.stdout  # the commands did list the methods
    assert _heavy(proc) == []


def test_the_dry_run_plans_without_model_code(tmp_path):
    """The real Snakefile (every rule file, the config checks of every method and recipe) on the tiny and the
    paper profile, `snakemake -n` in-process with the check at exit."""
    for profile in ("tiny", "paper"):
        argv = snakemake_cmd(tmp_path, "-n", "--configfile", str(REPO / f"workflows/config/{profile}.yaml"))[3:]
        code = (f"import atexit, runpy, sys\natexit.register(lambda: exec({REPORT!r}))\n"
                f"sys.argv = ['snakemake', *{argv!r}]\nrunpy.run_module('snakemake', run_name='__main__')\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              env=snakemake_env(), timeout=600, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert "train" in proc.stdout and "evaluate" in proc.stdout  # it planned the jobs
        assert _heavy(proc) == [], profile


def test_a_lazy_module_is_imported_at_its_first_attribute(tmp_path, monkeypatch):
    (tmp_path / "pgpo_lazy_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pgpo_lazy_probe", raising=False)
    probe = LazyModule("pgpo_lazy_probe")
    assert "pgpo_lazy_probe" not in sys.modules and "imported" not in repr(probe)
    assert probe.VALUE == 42
    assert sys.modules["pgpo_lazy_probe"].VALUE == 42 and "(imported)" in repr(probe)
    monkeypatch.delitem(sys.modules, "pgpo_lazy_probe")


def test_no_grad_runs_the_function_without_gradient():
    import torch

    from pgpo.methods.dependency import full_kl

    hidden = torch.randn(1, 3, 4, requires_grad=True)
    head = torch.nn.Linear(4, 5)
    kl = full_kl(hidden, hidden.detach() + 1.0, head, torch.ones(1, 3))
    assert kl.shape == (1, 3) and not kl.requires_grad and bool((kl >= 0).all())
    assert torch.is_grad_enabled()  # restored after the call
