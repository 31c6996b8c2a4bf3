"""Workflow jobs run the code of the checkout that planned them, or refuse (issue 25: a method YAML new in one
checkout passed `snakemake -n`, then the job, running the venv's editable install of another checkout, said
"unknown method"). pgpo/workflow/launch.py job_command, pgpo/util/checkout.py."""

import os
import shutil
import subprocess

import pytest
from workflow_run import QUICK, snakemake

from pgpo.config.schema import REPO
from pgpo.util.checkout import CHECKOUT_ENV, check_checkout
from pgpo.util.errors import UserError
from pgpo.workflow.launch import bind, job_command

WHERE = "python -c 'import pgpo; print(pgpo.__file__)'"


@pytest.fixture
def other(tmp_path):
    """Another checkout: a copy of this package (guard included) whose import says where it is, and a `pgpo` on
    PATH that is not the venv's."""
    root = tmp_path / "other"
    shutil.copytree(REPO / "pgpo", root / "pgpo", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pgpo").write_text("#!/bin/sh\necho the PATH pgpo ran\nexit 9\n")
    (tmp_path / "bin" / "pgpo").chmod(0o755)
    return root


def _shell(command, cwd, other):
    env = {**os.environ, "PYTHONPATH": str(other), "PATH": f"{other.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    env.pop(CHECKOUT_ENV, None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_job_command_puts_the_planning_checkout_first(tmp_path):
    (tmp_path / "pgpo").write_text("")  # the venv's script
    assert job_command("pgpo train --seed 0", REPO, tmp_path) == (
        f'export PYTHONPATH={REPO}"${{PYTHONPATH:+:$PYTHONPATH}}" {CHECKOUT_ENV}={REPO}; {tmp_path}/pgpo train --seed 0')
    spaced = tmp_path / "a repo"
    assert job_command("srun x", spaced, tmp_path).startswith(f"export PYTHONPATH='{spaced}'\"${{")


def test_a_job_imports_the_planning_checkout_over_another_on_pythonpath(other, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # the situation: the job's interpreter imports the other checkout (here through PYTHONPATH; an editable
    # install of it reads the same)
    assert _shell(bind(WHERE), work, other).stdout.strip() == str(other / "pgpo/__init__.py")
    assert _shell(job_command(WHERE, REPO), work, other).stdout.strip() == str(REPO / "pgpo/__init__.py")
    proc = _shell(job_command("pgpo methods", REPO), work, other)  # the venv's pgpo, not the PATH one
    assert proc.returncode == 0 and "\npgpo " in "\n" + proc.stdout and "PATH pgpo" not in proc.stdout, proc.stderr


def test_a_job_that_still_imports_another_checkout_refuses_in_one_line(other):
    # `python -m` puts the working directory first, before PYTHONPATH: a job run inside the other checkout
    proc = _shell(job_command("python -m pgpo.cli methods", REPO), other, other)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [(
        f"pgpo methods: error: this workflow job was planned by the checkout {REPO} but imports pgpo from {other}; "
        f"run Snakemake from a directory outside {other}, or let the launch command keep PYTHONPATH={REPO} (the "
        "job's code must be the code that planned it)")]


def test_the_guard_checks_only_workflow_jobs(tmp_path):
    check_checkout({})  # outside the workflow: any checkout runs
    check_checkout({CHECKOUT_ENV: str(REPO)})
    check_checkout({CHECKOUT_ENV: str(REPO / "pgpo" / "..")})  # the same folder, spelled otherwise
    with pytest.raises(UserError, match=f"planned by the checkout {tmp_path} but imports pgpo from {REPO};"):
        check_checkout({CHECKOUT_ENV: str(tmp_path)})


def test_a_snakemake_job_runs_the_planning_checkout(other, tmp_path):
    """A real job (make_data of the quick profile) with another checkout first on the job's PYTHONPATH; that
    checkout cannot even be imported, so the job succeeds only on this checkout's code."""
    (other / "pgpo" / "__init__.py").write_text("raise SystemExit('the other checkout was imported')\n")
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(work, "--cores", "1", "make_data", "--configfile", QUICK, check=False,
                     env={"PYTHONPATH": str(other)})
    log = work / "results/quick/logs/make_data.log"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + (log.read_text() if log.exists() else "")
    assert (work / "results/quick/data/MANIFEST.json").is_file()
    assert f"export PYTHONPATH={REPO}" in proc.stdout + proc.stderr  # the printed shell command
