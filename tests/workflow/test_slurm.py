"""Slurm for real: the profile settings Snakemake actually uses, one run of the quick DAG recomputed through the
Slurm executor on a one-node cluster (scripts/slurm_local.sh) and compared with the local executor's table, and
the paper profile's jobs scheduled on fake GPUs (never run). The cluster tests skip with the reason when Slurm is not installed, the
machine is not ours to configure (not root, a foreign /etc/slurm/slurm.conf); CI installs Slurm first."""

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from workflow_run import PAPER, QUICK, snakemake, snakemake_cmd, snakemake_env

from pgpo.config.schema import REPO

SCRIPT = REPO / "scripts/slurm_local.sh"
CLUSTER_PROFILES = ["profiles/slurm", "profiles/slurm-local"]
HEADER = "# pgpo-slurm-local: written by scripts/slurm_local.sh"


def effective_args(*argv):
    """The arguments Snakemake runs with for this command line in the repository root (its own parser, so the
    workflow profile profiles/default is applied on top of any --profile exactly as `snakemake` does)."""
    from snakemake.cli import parse_args

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return parse_args(["-s", "Snakefile", *argv])[1]
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("profile", CLUSTER_PROFILES)
def test_a_cluster_profile_keeps_its_own_settings_under_the_default_profile(profile):
    own = yaml.safe_load((REPO / profile / "config.yaml").read_text())
    args = effective_args("--profile", profile, "reproduce_table1")
    assert args.executor == "slurm" and args.jobs == own["jobs"]
    assert args.latency_wait == own["latency-wait"] == 60  # profiles/default once replaced it with 5, silently
    # no core count from the submit host: the remote executor then passes `--cores all` to every job (a `cores: all`
    # in profiles/default gave `--cores <login node's cores>` and capped every job's threads with it)
    assert args.cores is None
    assert set(args.resources) == {"mlflow"}


def test_the_default_profile_sets_nothing_a_cluster_profile_sets_differently():
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    for profile in CLUSTER_PROFILES:
        own = yaml.safe_load((REPO / profile / "config.yaml").read_text())
        assert {k: default[k] for k in default.keys() & own.keys()} == {k: own[k] for k in default.keys() & own.keys()}
    assert not default.keys() & {"cores", "jobs", "latency-wait", "executor", "local-cores"}
    local = effective_args("--cores", "all", "reproduce_table1")  # a local run still gets the shared settings
    assert local.cores == os.cpu_count() and local.printshellcmds and set(local.resources) == {"mlflow"}


def test_the_local_cluster_profile_asks_squeue_for_job_states():
    args = effective_args("--profile", "profiles/slurm-local", "reproduce_table1")
    assert args.slurm_status_command == "squeue"  # sacct fails without an accounting database


def why_no_cluster() -> str | None:
    if not all(shutil.which(b) for b in ("slurmctld", "slurmd", "sinfo", "munged")):
        return "Slurm is not installed (bash scripts/slurm_local.sh install; CI does)"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (it writes /etc/slurm/slurm.conf and starts slurmd)"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not conf.read_text().startswith(HEADER):
        return "/etc/slurm/slurm.conf exists and was not written by scripts/slurm_local.sh: not touching it"
    return None


def slurm_local(*args, check=True):
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def jobs_in(workdir: Path) -> list[str]:
    """Slurm job ids (any state squeue still shows) whose working directory is `workdir`."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%Z"], capture_output=True, text=True,
                         check=False).stdout
    return [i for i, d in (line.split("|", 1) for line in out.splitlines()) if Path(d) == workdir]


def show_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True,
                          check=True).stdout


@contextmanager
def cluster(*up_args, workdir: Path):
    """The local cluster up for one test; afterwards every job run from `workdir` is cancelled and the daemons
    stopped, even when the test failed. A cluster that was already up (someone's own) is used and left up."""
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    was_up = slurm_local("status", check=False).returncode == 0
    try:
        up = slurm_local("up", *up_args, check=False)
        if up.returncode != 0 and was_up:
            pytest.skip(f"a local cluster is already up in another mode: {up.stderr.strip()}")
        assert up.returncode == 0, up.stdout + up.stderr
        yield
    finally:
        ids = jobs_in(workdir)
        if ids:
            subprocess.run(["scancel", *ids], check=False)
        if not was_up:
            slurm_local("down")


def pid_of(name: str) -> int:
    return int(Path(f"/var/tmp/pgpo-slurm-local/{name}.pid").read_text())


def alive(pid: int, name: str) -> bool:
    comm = Path(f"/proc/{pid}/comm")
    return comm.exists() and comm.read_text().strip() == name


@pytest.mark.slow
def test_the_cluster_script_refuses_a_foreign_config_is_idempotent_and_stops_only_its_own_daemons():
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    if slurm_local("status", check=False).returncode == 0:
        pytest.skip("a local cluster is up already (its owner's): not taking it down")
    conf = Path("/etc/slurm/slurm.conf")
    munge_answers = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, check=False).returncode == 0
    theirs = None  # a munged that is not the script's (started here when none runs): `down` must leave it running
    mine = Path(tempfile.mkdtemp(prefix="pgpo-test-munge.", dir="/var/tmp"))  # pytest's tmp is closed to user munge
    mine.chmod(0o755)
    try:
        conf.parent.mkdir(exist_ok=True)
        conf.write_text("# a cluster's own config\nClusterName=theirs\n")
        refused = slurm_local("up", check=False)
        assert refused.returncode == 1 and "was not written by this script: not touching it" in refused.stderr
        assert conf.read_text() == "# a cluster's own config\nClusterName=theirs\n"
        conf.unlink()
        if not munge_answers:
            subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "/run/munge", str(mine)], check=True)
            subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--pid-file={mine}/munged.pid",
                            f"--log-file={mine}/munged.log"], check=True)
            theirs = int((mine / "munged.pid").read_text())
        first = slurm_local("up")
        daemons = {name: pid_of(name) for name in ("slurmctld", "slurmd")}
        again = slurm_local("up")  # already up: the same daemons, the node idle
        assert again.stdout == first.stdout and {n: pid_of(n) for n in daemons} == daemons
        assert not Path("/var/tmp/pgpo-slurm-local/munge/munged.pid").exists()  # the running munged was reused
        assert slurm_local("status").stdout.startswith("up (cpu): localhost idle")
        slurm_local("down")
        assert not any(alive(pid, name) for name, pid in daemons.items()) and not conf.exists()
        assert theirs is None or alive(theirs, "munged")
        assert slurm_local("status", check=False).returncode == 1 and slurm_local("down").returncode == 0
    finally:
        if conf.exists() and not conf.read_text().startswith(HEADER):
            conf.unlink()
        slurm_local("down", check=False)
        if theirs is not None and alive(theirs, "munged"):
            os.kill(theirs, signal.SIGTERM)
        shutil.rmtree(mine, ignore_errors=True)


def slurm_logs(workdir: Path) -> str:
    logs = sorted((workdir / ".snakemake/slurm_logs").rglob("*.log"))
    return "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in logs[-3:])


RECOMPUTED = "pgpo-s1"  # the run whose training and evaluation Slurm recomputes (the blind pass included)


@pytest.mark.slow
def test_slurm_recomputes_a_run_of_the_quick_dag_and_gives_the_local_table(quick_workflow, tmp_path):
    """A copy of the local executor's finished quick DAG (session fixture) with one run's training, its evaluation
    and the table deleted: `reproduce_table1` through the Slurm executor must recompute exactly those jobs (and what
    depends on them), each as a Slurm job, and give the local table1.csv. (The whole DAG through Slurm, 28 jobs, took 494 s
    against the local executor's 299 s, benchmarks/results/slurm_vs_local.json; this covers every kind of job the
    table needs at a fifth of that.)"""
    local_work, local_root, _ = quick_workflow
    work = tmp_path / "slurm"
    # copy2 keeps the mtimes, and .snakemake/metadata comes along: only what was deleted is out of date
    shutil.copytree(local_work, work, symlinks=True,
                    ignore=shutil.ignore_patterns("slurm_logs", "locks", "incomplete", "log"))
    for stage in ("runs", "eval"):
        shutil.rmtree(work / "results/quick" / stage / "tiny" / RECOMPUTED)
    # the table too: Snakemake leaves a present, up-to-date target alone even when its inputs are gone
    (work / "results/quick/table1.csv").unlink()
    with cluster(workdir=work):
        started = time.monotonic()
        proc = snakemake(work, "reproduce_table1", "--profile", str(REPO / "profiles/slurm-local"),
                         "--configfile", QUICK, timeout=1800, check=False)
        wall = time.monotonic() - started
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + slurm_logs(work)
    out = proc.stdout + proc.stderr
    # the plugin removes a successful job's log folder: the submissions are read from Snakemake's own output
    submitted = re.findall(r"has been submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", out)
    print(f"one run of the quick DAG recomputed through Slurm: {wall:.0f} s, Slurm jobs: {submitted}")
    assert sorted(submitted) == ["evaluate", "train"], out[-3000:]  # exactly the deleted run's, as Slurm jobs
    assert "localrule table_table1:" in out  # the table (a local rule) was rebuilt from them

    def rows(root):
        table = list(csv.DictReader((root / "table1.csv").read_text().splitlines()))
        return [{k: v for k, v in r.items() if k != "mlflow_run_ids"} for r in table]

    slurm, local = rows(work / "results/quick"), rows(local_root)
    assert len(slurm) == len(local) > 0
    assert slurm == local  # every column but the MLflow run ids: same runs, same scores, same config hashes


@pytest.mark.slow
def test_paper_profile_jobs_are_scheduled_on_fake_gpus_with_their_requests(tmp_path):
    """profiles/slurm + paper.yaml as a user submits them: sbatch accepts every job and the node allocates their
    GPUs, CPUs and memory. In fake-GPU mode a prolog holds each allocated job, so nothing trains."""
    work = tmp_path / "paper"
    (work / "data/virl39k").mkdir(parents=True)
    for name in ("train.jsonl", "MANIFEST.json", "prepare_report.json"):  # the prepared split, so training is ready
        (work / "data/virl39k" / name).write_text("")
    targets = ["results/paper/runs/3b/pgpo-s0/run.json", "results/paper/eval/3b/base/shard-geo3k.json"]
    expect = {  # rule -> (what the job asks for per job, CPUs, memory): profiles/slurm's set-resources
        "train": ("gres:gpu:h100:8", "16", "480000M"),
        "evaluate": ("gres:gpu:8", "16", "240000M"),
    }
    with cluster("--fake-gpus", workdir=work):
        # --slurm-no-account / squeue: this cluster has no accounting database (neither changes a resource)
        cmd = snakemake_cmd(work, *targets, "--profile", str(REPO / "profiles/slurm"), "--configfile", PAPER,
                            "--slurm-no-account", "--slurm-status-command", "squeue")
        log = work / "snakemake.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=work, env=snakemake_env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while len(jobs_in(work)) < len(targets):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # no retries, no resubmission: the jobs stay as submitted
            proc.wait()
        submitted = log.read_text()
        # the commands carry paper.yaml's threads (16), not the submit host's cores (profiles/default's old cap)
        assert "--set threads=16 " in submitted and "--set backend.threads=16 " in submitted, submitted[-3000:]
        ids = jobs_in(work)
        seen = {}
        for _ in ids:  # one job holds all 8 GPUs at a time: check it allocated, cancel it, the next one starts
            deadline = time.monotonic() + 60
            while True:
                shown = {i: show_job(i) for i in ids if i not in seen}
                running = [i for i, s in shown.items() if "JobState=RUNNING" in s]
                if running:
                    break
                assert time.monotonic() < deadline, "\n".join(shown.values())
                time.sleep(0.5)
            job = running[0]
            text = seen[job] = shown[job]
            rule = re.search(r"Comment=rule_(\w+?)_wildcards", text).group(1)
            per_job, cpus, mem = expect[rule]
            assert f"TresPerJob={per_job}" in text and "Partition=gpu" in text, text
            assert f"NumCPUs={cpus} " in text and f"MinMemoryNode={mem}" in text, text
            # allocated: 16 CPU ids, the memory and all 8 (fake) GPUs of the node
            assert re.search(rf"CPU_IDs=0-15 Mem={mem[:-1]} GRES=gpu:h100:8\(IDX:0-7\)", text), text
            batch = subprocess.run(["scontrol", "write", "batch_script", job, "-"], capture_output=True, text=True,
                                   check=True).stdout
            # the job step runs with the node's cores and the Slurm profile's latency-wait (profiles/default
            # once gave `--cores <submit host's cores>` and `--latency-wait 5`)
            assert "--cores 'all'" in batch and "--latency-wait 60" in batch, batch
            subprocess.run(["scancel", job], check=True)
        assert sorted(re.search(r"Comment=rule_(\w+?)_wildcards", t).group(1) for t in seen.values()) == sorted(expect)
        assert not (work / "results/paper/logs").exists()  # no job script ever started: nothing trained


def _job_state(job: str) -> tuple[str, str]:
    """(JobState, ExitCode) of a job as scontrol shows it (finished jobs stay for MinJobAge = 600 s)."""
    text = show_job(job)
    return re.search(r"JobState=(\w+)", text).group(1), re.search(r"ExitCode=(\S+)", text).group(1)


def _wait_finished(job: str, timeout: float = 600) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while (state := _job_state(job))[0] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
        assert time.monotonic() < deadline, show_job(job)
        time.sleep(1)
    return state


@pytest.mark.slow
def test_a_training_job_signalled_as_slurm_preempts_saves_its_step_and_the_resubmitted_job_resumes(
        tiny_dir, tiny_data, tmp_path):
    """Issue 23 on real Slurm: `scancel --full --signal=TERM` sends SIGTERM to every process of the job, as slurmstepd
    does on preemption and at `--signal=TERM@<s>` before the time limit (profiles/slurm asks for it on training).
    The job saves the step in progress and exits 75; the same job script submitted again resumes from it."""
    from pgpo.training.preemption import PREEMPTED_EXIT

    work = tmp_path / "preempt"
    work.mkdir()
    out = work / "run"
    sets = {"model.path": tiny_dir, "data.train": tiny_data / "train.jsonl", "rollout.prompts_per_step": 4,
            "rollout.update_prompts": 4, "rollout.num_generations": 4, "rollout.max_completion_length": 8,
            "micro_batch": 8, "max_steps": 4, "save_steps": 100, "threads": 1}
    # grpo: the untrained tiny model gives DAPO's dynamic sampling no signal for long (it stops after 5 capped steps)
    cmd = [sys.executable, "-m", "pgpo.cli", "train", "--method", "grpo", "--config",
           str(REPO / "workflows/config/train/tiny.yaml"), "--seed", "0", "--out", str(out)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    script = work / "train.sh"
    script.write_text("#!/bin/bash\nexec " + shlex.join(cmd) + "\n")

    def submit() -> str:
        return subprocess.run(["sbatch", "--parsable", "-p", "local", "-D", str(work), "-o", str(work / "job-%j.log"),
                               "--mem", "4000", str(script)], capture_output=True, text=True,
                              check=True).stdout.strip().split(";")[0]

    with cluster(workdir=work):
        job = submit()
        deadline = time.monotonic() + 600
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
            assert _job_state(job)[0] in ("PENDING", "RUNNING", "CONFIGURING") and time.monotonic() < deadline, \
                show_job(job)
            time.sleep(0.2)
        subprocess.run(["scancel", "--full", "--signal=TERM", job], check=True)
        state, code = _wait_finished(job)
        log = (work / f"job-{job}.log").read_text()
        assert code == f"{PREEMPTED_EXIT}:0", (state, code, log[-3000:])
        step = int(re.search(r"stopped by SIGTERM after step (\d+); checkpoint-\1 saved", log).group(1))
        assert 1 <= step < sets["max_steps"] and [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{step}"]
        again = submit()
        state, code = _wait_finished(again)
        assert (state, code) == ("COMPLETED", "0:0"), (work / f"job-{again}.log").read_text()[-3000:]
        run = json.loads((out / "run.json").read_text())
        assert run["resumed_from"].endswith(f"checkpoint-{step}") and run["global_steps"] == sets["max_steps"]
