"""Several processes, for real, on CPU: 2-process gloo trainings of dapo, pgpo and vppo on a warm-started tiny model.

Launcher: `accelerate launch --multi_gpu --num_processes 2` (accelerate's torchrun path; the Trainer runs with
use_cpu, so the process group is gloo on CPU). `accelerate launch --cpu --num_processes 2` is NOT used: without an
MPI hostfile accelerate's --cpu path starts ONE process (rank 0 of 1), and that run still trains (with half the
recipe's batch); test_cpu_flag_alone_starts_one_process pins that, and every run here asserts it had 2 processes.

What the per-process evidence shows (logged as min/max over processes by _dynamic_sampling_rollout and VPPO):
both processes ran the same number of dynamic-sampling rounds at every step even where one would have stopped
earlier; num_items_in_batch is the all-process completion-token count; VPPO's alphas have mean 1 over both
processes' responses while a process's own mean is not 1; a kill -9 of the whole 2-process job at checkpoint-1
resumes to the uninterrupted run's weights (through TRLBridge._load_optimizer_and_scheduler: transformers maps the
optimizer state to torch.device('cpu', 0) there, which torch.load cannot restore to); DeepSpeed ZeRO-3 (the paper's accelerate config, precision and process
count changed for CPU) and ZeRO-2 train the same 2 steps to the same weights as plain data parallelism.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pgpo.config.schema import REPO, load_method

pytestmark = pytest.mark.slow
RECIPE = str(REPO / "workflows/config/train/tiny.yaml")
STEPS = 2
TIMING = ("time", "runtime", "per_second")  # wall-clock statistics differ between any two runs
DS = "dynamic_sampling/"


def free_port() -> int:
    with socket.socket() as s:  # other test sessions may run on this machine: never the default 29500
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model, data, out, method, launcher=("--multi_gpu",), **sets):
    recipe = {"model.path": model, "data.train": data / "train.jsonl", "rollout.prompts_per_step": 4,
              "rollout.update_prompts": 4, "rollout.num_generations": 4, "rollout.max_completion_length": 20,
              "micro_batch": 8, "max_steps": STEPS, "save_steps": 1, "save_total_limit": 2, "threads": 1,
              "num_processes": 2, **sets}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "pgpo.cli", "train", "--method", method, "--config", RECIPE, "--seed", "0", "--out", str(out)]
    for k, v in recipe.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in rows]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def warm(tiny_dir, tiny_data, tmp_path_factory):
    """60 supervised steps (~10 s): the answer format and some answers, so rollouts of a group disagree (reward
    variance) for some groups and not others, and dynamic sampling has something to refill."""
    from pgpo.tiny.warmstart import WarmStartConfig, warm_start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("warm") / "model"
        warm_start(tiny_dir, tiny_data, out, WarmStartConfig(steps=60, batch_size=8, warmup_steps=5, eval_every=0,
                                                             eval_items=1))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def straight(warm, tiny_data, tmp_path_factory):
    """Uninterrupted 2-process runs of dapo, pgpo and vppo (2 steps each)."""
    outs = {}
    for method in ("dapo", "pgpo", "vppo"):
        outs[method] = tmp_path_factory.mktemp(f"mp-{method}") / "run"
        run(launch(warm, tiny_data, outs[method], method))
    return outs


@pytest.mark.parametrize("method", ["dapo", "pgpo", "vppo"])
def test_two_processes_sample_in_lockstep_and_normalise_by_all_tokens(method, straight):
    out = straight[method]
    done = json.loads((out / "run.json").read_text())
    assert done["global_steps"] == STEPS and done["resumed_from"] is None
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    cap = load_method(method).dynamic_sampling.max_rounds
    for r in rows:
        assert r[DS + "processes"] == 2  # a real 2-process group, not a silently single-process launch
        # (1) the same number of rounds on both processes; the group stops when the LAST process is full (or at
        # the cap), not when rank 0 is
        assert r[DS + "rounds_min"] == r[DS + "rounds_max"] == r[DS + "rounds"], r
        assert r[DS + "rounds"] == min(cap, r[DS + "rounds_needed_max"]), r
        # (3) the dapo normaliser: every process's completion tokens, not this process's
        assert 0 < r[DS + "tokens_min"] <= r[DS + "tokens_max"] <= 8 * 20  # 8 rows of <= 20 tokens a process
        assert r[DS + "num_items_in_batch"] == r[DS + "tokens_min"] + r[DS + "tokens_max"], r
    # without a step where one process was full before the other, lockstep would be untested
    assert any(r[DS + "rounds_needed_min"] < r[DS + "rounds"] for r in rows), rows
    if method == "vppo":  # (2) alpha has mean 1 over the whole batch of both processes, not per process
        assert all(r["vppo/alpha_mean_all"] == pytest.approx(1.0, abs=1e-5) for r in rows), rows
        assert any(abs(r["vppo/alpha_mean"] - 1.0) > 1e-3 for r in rows), rows  # rank 0's own mean
        assert all(r["vppo/alpha_min"] >= 0.9 - 1e-6 and r["vppo/alpha_max"] > r["vppo/alpha_min"] for r in rows)


def kill_job_at_checkpoint(cmd, out: Path, step: int):
    """Start a 2-process training and SIGKILL the whole job (launcher and both workers) as soon as
    checkpoint-<step> is complete. Killing the launcher's process group alone is not enough: torch's elastic
    agent starts every worker in a session of its own, and orphaned workers finish the run."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)
    deadline = time.time() + 600
    while not (out / f"checkpoint-{step}" / "trainer_state.json").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    trainers = [w for w in workers if "pgpo.cli" in w.cmdline()]
    groups = [os.getpgid(w.pid) for w in trainers]
    os.killpg(proc.pid, signal.SIGKILL)
    for w in workers:
        try:
            w.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(workers, timeout=60)
    assert len(trainers) == 2 and proc.pid not in groups, groups  # the workers are outside the launcher's group
    assert not (out / "run.json").exists(), "killed too late: the run had finished"


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(straight, warm, tiny_data, tmp_path):
    """(4) VPPO (its entropy term moves the weights whatever the rewards): kill -9 after checkpoint-1, rerun the
    same command: it resumes from checkpoint-1 and ends where the uninterrupted 2-process run ended."""
    out = tmp_path / "killed"
    cmd = launch(warm, tiny_data, out, "vppo")
    kill_job_at_checkpoint(cmd, out, 1)
    assert not (out / f"checkpoint-{STEPS}").exists()
    again = subprocess.run(launch(warm, tiny_data, out, "vppo"), capture_output=True, text=True, timeout=600,
                           env=ENV, check=False)  # the same command (on a fresh port) continues the run
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    done = json.loads((out / "run.json").read_text())
    assert done["global_steps"] == STEPS and done["resumed_from"].endswith("checkpoint-1")
    ref, got = weights(straight["vppo"] / "final"), weights(out / "final")
    assert max_diff(ref, got) <= 1e-6
    assert max_diff(ref, {k: v for k, v in weights(Path(warm)).items() if k in ref}) > 1e-4  # training moved them
    assert metrics(out) == metrics(straight["vppo"])  # every logged step, both processes' statistics included


def test_cpu_flag_alone_starts_one_process(tmp_path):
    """Why the runs here use --multi_gpu: `accelerate launch --cpu --num_processes 2` without MPI starts a single
    process (world size 1); a training launched that way would run on half the recipe's batch."""
    script = tmp_path / "world.py"
    script.write_text("import sys\nfrom pathlib import Path\nfrom accelerate import PartialState\n"
                      "s = PartialState(cpu=True)\n"  # one file per process: printed lines of two ranks interleave
                      "Path(sys.argv[1], f'world-{s.process_index}').write_text(f'world {s.process_index} "
                      "{s.num_processes}')\n")
    base = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    seen = {}
    for flag in ("--cpu", "--multi_gpu"):
        (tmp_path / flag).mkdir()
        run([*base[:3], flag, *base[3:], str(script), str(tmp_path / flag)])
        seen[flag] = sorted(p.read_text() for p in (tmp_path / flag).glob("world-*"))
    assert seen == {"--cpu": ["world 0 1"], "--multi_gpu": ["world 0 2", "world 1 2"]}


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_on_cpu_trains_like_data_parallelism(stage, straight, warm, tiny_data, tmp_path):
    """The paper's ZeRO-3 accelerate config (ZeRO-2: the same with stage 2) with 2 CPU processes, mixed precision
    off (the tiny recipe is float32): states really partitioned, same metrics and weights as the 2-process DDP run.
    DeepSpeed JIT-builds its CPU shared-memory comm op (deepspeed_shm_comm, g++/ninja) on first use: ~100 s once,
    cached in ~/.cache/torch_extensions."""
    paper = yaml.safe_load((REPO / "workflows/config/accelerate/zero3.yaml").read_text())
    assert paper["deepspeed_config"]["zero_stage"] == 3
    ds = {**paper["deepspeed_config"], "zero_stage": stage}
    if stage != 3:
        ds = {k: v for k, v in ds.items() if not k.startswith("zero3_")}
    config = tmp_path / f"zero{stage}-cpu.yaml"
    config.write_text(yaml.safe_dump({**paper, "deepspeed_config": ds, "mixed_precision": "no", "num_processes": 2}))
    out = tmp_path / f"zero{stage}"
    run(launch(warm, tiny_data, out, "vppo", launcher=("--config_file", str(config)), save_steps=STEPS))
    assert json.loads((out / "run.json").read_text())["global_steps"] == STEPS
    saved = out / f"checkpoint-{STEPS}/global_step{STEPS}"
    if stage == 3:
        state = torch.load(saved / "zero_pp_rank_1_mp_rank_00_model_states.pt", weights_only=False, map_location="cpu")
        assert all(p.numel() == 0 for p in state["module"].values())  # each rank holds a shard, not the parameter
    else:
        state = torch.load(saved / "mp_rank_00_model_states.pt", weights_only=False, map_location="cpu")
        optim = torch.load(saved / "zero_pp_rank_1_mp_rank_00_optim_states.pt", weights_only=False,
                           map_location="cpu")["optimizer_state_dict"]
        shard = sum(t.numel() for t in optim["single_partition_of_fp32_groups"])
        assert set(optim["partition_count"]) == {2} and shard < sum(p.numel() for p in state["module"].values())
    assert state["ds_config"]["zero_optimization"]["stage"] == stage and state["dp_world_size"] == 2
    got, ref = metrics(out), metrics(straight["vppo"])
    assert [r[DS + "processes"] for r in got] == [2] * STEPS
    for a, b in zip(got, ref):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    final = weights(out / "final")
    tied = final.pop("lm_head.weight", None)  # ZeRO-2 also saves the tied head (the tiny model ties embeddings)
    assert tied is None or torch.equal(tied, final["model.embed_tokens.weight"])
    assert max_diff(final, weights(straight["vppo"] / "final")) <= 1e-5


def test_a_model_only_checkpoint_under_deepspeed_stops_naming_what_to_do(warm, tiny_data, tmp_path):
    """save_model_only under DeepSpeed: transformers' DeepSpeed resume needs the global_step*/ folder a weights-only
    checkpoint lacks; the run stops with one line naming the checkpoint to start a new run from (it used to fail
    inside transformers with "Can't find a valid checkpoint")."""
    import shutil

    paper = yaml.safe_load((REPO / "workflows/config/accelerate/zero3.yaml").read_text())
    ds = {k: v for k, v in paper["deepspeed_config"].items() if not k.startswith("zero3_")} | {"zero_stage": 2}
    config = tmp_path / "zero2-cpu.yaml"
    config.write_text(yaml.safe_dump({**paper, "deepspeed_config": ds, "mixed_precision": "no", "num_processes": 2}))
    out = tmp_path / "run"
    cmd = launch(warm, tiny_data, out, "dapo", launcher=("--config_file", str(config)), save_model_only="true")
    run(cmd)
    assert not list((out / "checkpoint-1").glob("global_step*")) and (out / "checkpoint-1" / "model.safetensors").is_file()
    for done in (out / f"checkpoint-{STEPS}", out / "final"):  # as if killed after checkpoint-1
        shutil.rmtree(done)
    (out / "run.json").unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "pgpo train: error:" in line]
    assert lines and "holds the weights only (save_model_only) and DeepSpeed cannot resume" in lines[0], \
        proc.stderr[-3000:]
    assert f"--set model.path={out / 'checkpoint-1'}" in lines[0]
