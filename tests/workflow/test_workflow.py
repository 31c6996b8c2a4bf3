"""The Snakemake workflow: the quick profile end to end, the paper dry run, adding a method, MLflow, resume."""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from workflow_run import PAPER, QUICK, snakemake

from pgpo.config.schema import REPO
from pgpo.records.stages import read_run

pytestmark = pytest.mark.slow
METHODS = sorted(p.stem for p in (REPO / "baselines").glob("*.yaml"))  # every Table 1 row (6: grpo ... vppo)


@pytest.fixture(scope="module")
def quick(quick_workflow):
    """The quick profile's reproduce_table1 + table7 + dependency_report (a session fixture: test_slurm reuses it)."""
    return quick_workflow


def test_quick_dag_writes_table1_with_cis_and_provenance(quick):
    _, root, log = quick
    md = (root / "table1.md").read_text()
    assert METHODS  # every baselines/*.yaml is a row below, however many there are
    for row in ["base", *METHODS]:  # the peer baselines join the table with no new rule
        assert f"| {row} |" in md
    assert "| row | count | colour | bars | digit | position | shape | polygon | control | avg |" in md
    rows = list(csv.DictReader((root / "table1.csv").read_text().splitlines()))
    assert len(rows) == (1 + len(METHODS)) * 9
    trained = next(r for r in rows if r["row"] == "pgpo" and r["column"] == "count")
    assert trained["n_seeds"] == "2" and len(trained["per_seed"].split(";")) == 2
    assert [len(i) for i in trained["mlflow_run_ids"].split(";")] == [32, 32]  # one MLflow run per seed
    assert [len(h) for h in trained["config_hashes"].split(";")] == [16, 16] and trained["failed_items"] == "0"
    assert float(trained["ci95_low"]) <= float(trained["mean"]) <= float(trained["ci95_high"])
    assert (root / "table1.png").stat().st_size > 1000 and (root / "table7.md").exists()
    assert "stage wall times" in log and "train" in log and "evaluate" in log
    report = json.loads((root / "reports/dependency.json").read_text())
    assert set(report["suites"]) >= {"count", "all"} and (root / "reports/dependency.html").exists()
    assert "A rollout of the training run, tokens coloured by the weight" in (root / "reports/dependency.html").read_text()
    # the table says what the quick profile is; pass@k and maj@k below avg@k, from the same samples
    page = (root / "table1.html").read_text()
    assert "**Quick profile: a plumbing check" in md and "a plumbing check" in page
    assert "A sampled response per method" in page and "<h4>pgpo</h4>" in page  # logged rollouts, coloured
    assert "## Extra view: pass@k" in md and "## Extra view: maj@k" in md and md.index("pass@k") > md.index("| avg |")


def test_the_mean_is_the_same_number_in_the_table_mlflow_and_status(quick):
    work, root, _ = quick
    from mlflow.tracking import MlflowClient

    from pgpo.tracking.ingest import store

    rows = list(csv.DictReader((root / "table1.csv").read_text().splitlines()))
    table_avg = float(next(r for r in rows if r["row"] == "base" and r["column"] == "avg")["mean"])
    ids = json.loads((root / "tracking/table1.json").read_text())["runs"]
    base = MlflowClient(tracking_uri=store(root)[0]).get_run(next(v for k, v in ids.items()
                                                                 if k.endswith("eval/tiny/base")))
    assert base.data.metrics["avg_at_k.mean"] == pytest.approx(table_avg, abs=1e-9)  # the control left out of both
    assert {"pass_at_k.tiny_count", "maj_at_k.tiny_count"} <= set(base.data.metrics)
    proc = subprocess.run([sys.executable, "-m", "pgpo.cli", "status", str(root)], check=False, capture_output=True,
                          text=True, timeout=300, cwd=work)
    line = next(ln for ln in proc.stdout.splitlines() if "base" in ln and "mean avg@k" in ln)
    assert f"mean avg@k {table_avg:.3f}" in line, line


def test_quick_dag_writes_the_paired_difference_views(quick):
    """Every table target has its difference-to-reference view (reference rows named in the config), each row with
    every benchmark and Avg, a sign-flip p, the detectable difference, the training-curve differences, in the
    HTML page and in MLflow; `pgpo power` reads the finished target."""
    work, root, _ = quick
    from pgpo.workflow import plan

    config = plan.load_profile(QUICK)
    for target, n_cols in (("table1", 9), ("table7", 9)):
        name = config["paired"]["reference"][target]
        rows = list(plan.table_rows(config, target, REPO))
        md = (root / f"{target}.diff.md").read_text()
        for row in rows:
            assert (f"| {row} | {name} |" in md or f"| {row} (one evaluation, shared by every seed) | {name} |" in md) \
                == (row != name), (target, row)
        assert "Smallest difference this design detects (80% power, 5% two-sided" in md
        assert "## Training curve `reward`" in md
        recs = list(csv.DictReader((root / f"{target}.diff.csv").read_text().splitlines()))
        questions = [r for r in recs if r["n_questions"]]
        assert len(questions) == (len(rows) - 1) * n_cols
        avg = next(r for r in questions if r["row"] != "base" and r["column"] == "avg")
        assert avg["n_seeds"] == "2" and float(avg["p_value"]) in (0.5, 1.0)  # 2 seeds: p is 0.5 or 1
        assert float(avg["ci95_low"]) <= float(avg["mean"]) <= float(avg["ci95_high"])
        assert any(r["column"].startswith("reward: mean level, steps 1-1") for r in recs)
        assert "<h3>Paired differences to the reference row</h3>" in (root / f"{target}.html").read_text()
    from mlflow.tracking import MlflowClient

    from pgpo.tracking.ingest import store

    parent = json.loads((root / "tracking/table1.json").read_text())["parent_run_id"]
    logged = {a.path for a in MlflowClient(tracking_uri=store(root)[0]).list_artifacts(parent)}
    assert {"table1.diff.md", "table1.diff.csv", "table1.diff.json", "diff.json"} <= logged
    result = json.loads((root / "eval/tiny/base/tiny_count.json").read_text())
    assert all(len(q["samples"]) == result["k"] for q in result["per_question"])
    proc = subprocess.run([sys.executable, "-m", "pgpo.cli", "power", "--target", str(root / "table1"),
                           "--difference", "0.05"], check=False, capture_output=True, text=True, timeout=300,
                          cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "2 seed(s) x 3 questions x 7 benchmark(s) x k=2 samples" in proc.stdout and "total SE" in proc.stdout


def test_quick_dag_draws_the_figures_logs_them_and_one_report_holds_them(quick):
    work, root, _ = quick
    figures = ["table1.png", "table1.curves.png", "table7.png", "table7.curves.png", "warmstart.png"]
    for name in figures:
        assert (root / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (root / name).stat().st_size > 5000, name
    assert "<th style='text-align:left;padding:2px 8px'>pgpo</th>" in (root / "table1.html").read_text()
    from mlflow.tracking import MlflowClient

    from pgpo.tracking.ingest import store

    client = MlflowClient(tracking_uri=store(root)[0])
    parent = json.loads((root / "tracking/table1.json").read_text())["parent_run_id"]
    assert {"table1.curves.png", "table1.png", "warmstart.png", "table1.html"} <= {
        a.path for a in client.list_artifacts(parent)}
    report = work / "report.html"
    snakemake(work, "--report", str(report), "reproduce_table1", "table7", "dependency_report", "--configfile", QUICK,
              timeout=300)
    page = report.read_text()
    # every table, figure and the dependency report embedded (data URIs) in the one page, with captions
    embedded = set(re.findall(r"data:(?:image/png|text/html);charset=utf8;filename=([^;]+);base64,", page))
    assert embedded == {*figures, "table1.html", "table7.html", "dependency.html", "dependency.png"}
    assert "band the range from the lowest to the highest seed" in page and "Visual dependency" in page


def test_reingesting_creates_no_duplicate_runs(quick):
    work, root, _ = quick
    from mlflow.tracking import MlflowClient

    from pgpo.tracking.ingest import store

    client = MlflowClient(tracking_uri=store(root)[0])
    exps = [client.get_experiment_by_name(name).experiment_id for name in ("quick/table1", "quick/training")]
    before = sorted(r.info.run_id for r in client.search_runs(exps))
    tracking = root / "tracking/table1.json"
    tracking.unlink()
    snakemake(work, "--cores", "1", str(tracking.relative_to(work)), "--configfile", QUICK)
    after = sorted(r.info.run_id for r in client.search_runs(exps))
    n_train = 2 * len(METHODS)
    assert after == before and len(after) == 1 + n_train + n_train + 1  # parent + runs + their evals + base eval
    runs = {(r.data.params.get("method"), r.data.params.get("seed")): r for r in client.search_runs([exps[1]])}
    # the training jobs logged them live (no server), with the quick profile's samples table of its one step
    assert len(runs) == n_train and all(r.data.tags["pgpo.live"] == "true" for r in runs.values())
    assert {r.data.tags["kind"] for r in runs.values()} == {"train"}
    steps = [f.path for f in client.list_artifacts(runs[("pgpo", "0")].info.run_id, "samples")]
    assert steps == ["samples/step_000001.json"]
    vppo, papo, dapo = runs[("vppo", "0")], runs[("papo", "0")], runs[("dapo", "0")]
    assert (vppo.data.params["blind_view"], papo.data.params["blind_view"], dapo.data.params["blind_view"]) == (
        "patch_blackening", "patch_blackening", "-")
    assert (papo.data.params["loss_terms.perception_kl.gamma"], papo.data.params["shaper.name"]) == ("0.01", "identity")
    assert not any(k.startswith("loss_terms.") for k in dapo.data.params)
    assert {"dependency/mean", "vppo/alpha_mean", "loss_terms/entropy_penalty"} <= set(vppo.data.metrics)
    assert {"dependency/mean", "loss_terms/perception_kl", "blind/blackened_fraction"} <= set(papo.data.metrics)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_lists_the_runs_over_rest(quick):
    _, root, _ = quick
    from pgpo.tracking.ingest import store

    uri, artifacts = store(root)
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                               str(port), "--backend-store-uri", uri, "--default-artifact-root", artifacts,
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        exp = json.load(urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=quick/table1"))
        body = json.dumps({"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100}).encode()
        req = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
        runs = json.load(urllib.request.urlopen(req))["runs"]
        kinds = sorted({t["value"] for r in runs for t in r["data"].get("tags", []) if t["key"] == "kind"})
        assert kinds == ["evaluation"] and len(runs) == 1 + 2 * len(METHODS) + 1  # parent, evaluations, base
        exp = json.load(urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=quick/training"))
        body = json.dumps({"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100}).encode()
        req = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
        assert len(json.load(urllib.request.urlopen(req))["runs"]) == 2 * len(METHODS)
        evals = [r for r in runs if {"key": "kind", "value": "evaluation"} in r["data"]["tags"]]
        assert any(m["key"] == "avg_at_k.tiny_count" for m in evals[0]["data"]["metrics"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", "mlflow server left processes behind"


def test_paper_dry_run_lists_every_training_and_evaluation_job_with_gpus():
    proc = snakemake(REPO, "-n", "reproduce_table1", "--configfile", PAPER, timeout=300)
    out = proc.stdout
    n_methods = len(list((REPO / "baselines").glob("*.yaml")))
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["train"] == 2 * n_methods  # 3B and 7B x every method
    assert counts["evaluate"] == 2 * (n_methods + 1) * 8  # (base + methods) x 2 sizes x 8 columns
    # the repository's accelerate config by its absolute path: jobs run in the workflow's directory, not the checkout
    assert "gpu=8" in out and f"accelerate launch --config_file {REPO}/workflows/config/accelerate/zero3.yaml " in out
    # ViRL39K is converted once, before any training, and every training reads that split
    assert counts["prepare_train_data"] == 1
    assert "prepare virl39k --src data/virl39k_raw --out data/virl39k --max-rejected-fraction 0.05" in out
    assert out.count("--set data.train=data/virl39k/train.jsonl") == counts["train"]
    # the base rows are evaluated at the pinned hub commit (16 jobs: 2 sizes x 8 columns), no other row is
    assert out.count("--revision 66285546d2b821cf421d4f5eb2576359d3770cd3") == 8
    assert out.count("--revision cc594898137f460bfe9f0759e9844b3ce807cfb5") == 8


def test_slurm_profile_dry_run():
    proc = snakemake(REPO, "-n", "reproduce_table1", "--profile", str(REPO / "profiles/slurm"),
                     "--configfile", PAPER, timeout=300)
    assert "slurm_partition=gpu" in proc.stdout and "cpus_per_task=16" in proc.stdout


def test_lint_is_clean():
    for extra in ([], ["--configfile", PAPER], ["--configfile", str(REPO / "workflows/config/testbed.yaml")]):
        proc = snakemake(REPO, "--lint", *extra, timeout=300)
        assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_a_new_method_yaml_is_scheduled_without_touching_rules(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", ".git"))
    (copy / "baselines/throwaway.yaml").write_text("extends: grpo\ndescription: a test method\n")
    # the copy's own package plans and checks it (as it would for a user who added the file to their clone)
    proc = snakemake(copy, "-n", "reproduce_table1", "--configfile", str(copy / "workflows/config/quick.yaml"),
                     snakefile=copy / "Snakefile", timeout=300, env={"PYTHONPATH": str(copy)})
    assert "runs/tiny/throwaway-s0/run.json" in proc.stdout and "eval/tiny/throwaway-s1/shard-tiny.json" in proc.stdout


def test_bad_config_is_rejected_by_the_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(QUICK).read_text().replace("extends: tiny.yaml", f"extends: {REPO}/workflows/config/tiny.yaml")
                   + "seeds: [zero]\n")
    proc = snakemake(REPO, "-n", "reproduce_table1", "--configfile", str(bad), check=False, timeout=300)
    assert proc.returncode != 0 and "seeds" in proc.stdout + proc.stderr


def test_killed_training_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(quick, tmp_path):
    """SIGKILL the workflow mid-training, unlock, rerun the same command: the job resumes from its checkpoint."""
    work, root, _ = quick
    steps = "train_set={max_steps: 6, save_steps: 2, rollout.prompts_per_step: 2, rollout.update_prompts: 2, " \
            "rollout.num_generations: 2, micro_batch: 4}"
    target = "results/quick/runs/tiny/grpo-s7/run.json"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "1",
           target, "--configfile", QUICK, "--config", steps]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = root / "runs/tiny/grpo-s7/checkpoint-2"
    for _ in range(600):
        if (ckpt / "trainer_state.json").exists():
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "runs/tiny/grpo-s7/run.json").exists()
    subprocess.run(cmd + ["--unlock"], capture_output=True, check=True)
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    run = read_run(root / "runs/tiny/grpo-s7")
    assert run.resumed_from and "checkpoint-" in run.resumed_from and run.global_steps == 6
    resumed = [json.loads(line) for line in (root / "runs/tiny/grpo-s7/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in resumed] == [1, 2, 3, 4, 5, 6]
    # the same job uninterrupted, elsewhere: identical per-step rewards
    other = tmp_path / "uninterrupted"
    from pgpo.cli import main

    assert main(["train", "--method", "grpo", "--config", str(REPO / "workflows/config/train/tiny.yaml"), "--seed", "7",
                 "--set", f"model.path={root / 'model/warmstart'}", "--set", "max_steps=6", "--set", "save_steps=2",
                 "--set", "rollout.prompts_per_step=2", "--set", "rollout.update_prompts=2", "--set",
                 "rollout.num_generations=2", "--set", "micro_batch=4", "--set", "threads=1",
                 "--set", f"data.train={root / 'data/train.jsonl'}", "--out", str(other)]) == 0
    straight = [json.loads(line) for line in (other / "metrics.jsonl").read_text().splitlines()]
    assert [m["reward"] for m in resumed] == pytest.approx([m["reward"] for m in straight])


def test_a_profile_extending_another_without_its_own_name_is_refused(tmp_path):
    """`extends: quick.yaml` and no `profile:` key: refused before any job, naming the file. (The Snakefile once
    loaded tiny.yaml under such a file, whose keys then won over the parent's: the full tiny DAG under results/tiny.)
    With its own name it gets the parent's values (1 RL step) under its own root."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: {REPO}/workflows/config/quick.yaml\nroot: {tmp_path}/root\n")
    proc = snakemake(REPO, "-n", "-p", "reproduce_table1", "--configfile", str(mine), timeout=300, check=False)
    assert proc.returncode != 0
    assert f"{mine}" in proc.stdout + proc.stderr and "no `profile:` name" in proc.stdout + proc.stderr
    mine.write_text(mine.read_text() + "profile: mine\n")
    proc = snakemake(REPO, "-n", "-p", "reproduce_table1", "--configfile", str(mine), timeout=300)
    train = [line for line in proc.stdout.splitlines() if " train " in line and "--set" in line]
    assert train, proc.stdout[-2000:]
    assert all("max_steps=1 " in line or line.endswith("max_steps=1") for line in train), train[0]
    assert f"{tmp_path}/root/runs/tiny/" in proc.stdout  # its own root, over the parent's


def test_a_profile_with_a_repeated_key_or_a_broken_parent_is_named(tmp_path):
    """Snakemake's own YAML reader keeps the last of a repeated key; a parent's YAML error was a raw traceback."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: {REPO}/workflows/config/quick.yaml\nprofile: mine\nseeds: [0]\nseeds: [1]\n")
    proc = snakemake(REPO, "-n", "reproduce_table1", "--configfile", str(mine), timeout=300, check=False)
    assert proc.returncode != 0 and "key 'seeds' given twice (lines 3 and 4)" in proc.stdout + proc.stderr
    parent = tmp_path / "parent.yaml"
    parent.write_text("profile: parent\nseeds: [0\n")
    mine.write_text(f"extends: {parent}\nprofile: mine\n")
    proc = snakemake(REPO, "-n", "reproduce_table1", "--configfile", str(mine), timeout=300, check=False)
    assert proc.returncode != 0 and f"{parent}:3:1: invalid YAML" in proc.stdout + proc.stderr
