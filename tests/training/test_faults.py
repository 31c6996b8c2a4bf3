"""Fault matrix, training side: kill -9 at a checkpoint then resume (weights and every logged step equal an
uninterrupted run), re-running a finished run, a changed recipe on an existing run, an incomplete checkpoint."""

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_runs import RECIPE, STEPS, kill_at_checkpoint, run, straight_runs, train_cmd

pytestmark = pytest.mark.slow
TIMING = ("time", "runtime", "per_second")  # wall-clock statistics differ between any two runs


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)} for r in rows]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def straight(tiny_dir, tiny_data, tmp_path_factory):
    """Uninterrupted reference runs (PAPO: its loss terms move the weights even at zero reward; DAPO: refills)."""
    return straight_runs(tiny_dir, tiny_data, tmp_path_factory, ("papo", "dapo"))


@pytest.mark.parametrize("method", ["papo", "dapo"])
def test_kill_at_a_checkpoint_then_resume_equals_an_uninterrupted_run(method, straight, tiny_dir, tiny_data,
                                                                       tmp_path):
    out = tmp_path / "killed"
    cmd = train_cmd(tiny_dir, tiny_data, out, method)
    kill_at_checkpoint(cmd, out, 2)
    run(cmd)  # the same command continues the run
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["resumed_from"] and resumed["global_steps"] == STEPS
    ref, got = weights(straight[method] / "final"), weights(out / "final")
    assert ref.keys() == got.keys()
    worst = max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by up to {worst}"
    if method == "papo":  # the comparison means something only if training moved the weights
        start = weights(Path(tiny_dir))
        moved = max(float((ref[k].float() - start[k].float()).abs().max()) for k in ref if k in start)
        assert moved > 1e-4, moved
    assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))
    assert metrics(out) == metrics(straight[method])  # every logged step, num_tokens of refills included
    logged = (out / "samples.jsonl").read_text()
    assert logged == (straight[method] / "samples.jsonl").read_text()  # the rollouts logged after the kill too
    assert [json.loads(line)["step"] for line in logged.splitlines()] == [s for s in range(1, STEPS + 1) for _ in (0, 1)]


def test_sigterm_saves_the_step_in_progress_and_the_same_command_resumes_to_the_uninterrupted_weights(
        straight, tiny_dir, tiny_data, tmp_path):
    """Issue 23: Slurm's SIGTERM before SIGKILL. With no periodic checkpoint due (save_steps 100), SIGTERM during
    step 2 gives checkpoint-2 (the step in progress) and exit 75; no final/, run.json unfinished; the same command resumes at step 2 and
    ends with the uninterrupted run's weights and metrics."""
    from pgpo.training.preemption import PREEMPTED_EXIT

    out = tmp_path / "preempted"
    cmd = train_cmd(tiny_dir, tiny_data, out, "dapo", "--set", "save_steps=100")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, "training ended before step 1 was logged"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # step 2 is in progress (step 1 has just been logged)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == PREEMPTED_EXIT, output[-3000:]
    # the step in progress when the signal landed: 2, unless step 2 ended within the poll (then 3)
    step = int(re.search(r"stopped by SIGTERM after step (\d+); checkpoint-\1 saved", output).group(1))
    assert 2 <= step < STEPS
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{step}"]
    assert (out / f"checkpoint-{step}" / "trainer_state.json").exists() and not (out / "final").exists()
    assert (out / "run_config.json").exists() and not (out / "run.json").exists()  # unfinished
    run(cmd)
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["resumed_from"].endswith(f"checkpoint-{step}") and resumed["global_steps"] == STEPS
    ref, got = weights(straight["dapo"] / "final"), weights(out / "final")
    assert max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref) <= 1e-6
    assert metrics(out) == metrics(straight["dapo"])


def test_a_model_only_checkpoint_resumes_but_says_it_is_not_exact(straight, tiny_dir, tiny_data, tmp_path):
    """save_model_only: checkpoints without optimizer, scheduler or RNG state. A kill and resume finishes the run,
    with a warning and run.json's resumed_inexactly, and the weights differ from the uninterrupted run's (AdamW's
    moments restarted): what the recipe field's documentation says."""
    out = tmp_path / "model-only"
    cmd = train_cmd(tiny_dir, tiny_data, out, "papo", "--set", "save_model_only=true")
    kill_at_checkpoint(cmd, out, 2)
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert not {"optimizer.pt", "scheduler.pt", "rng_state.pth"} & {p.name for p in (out / "checkpoint-2").iterdir()}
    proc = run(cmd)
    assert "holds the weights only (save_model_only)" in proc.stderr
    done = json.loads((out / "run.json").read_text())
    assert done["resumed_inexactly"] is True and done["global_steps"] == STEPS
    ref, got = weights(straight["papo"] / "final"), weights(out / "final")
    assert max(float((ref[k] - got[k]).abs().max()) for k in ref) > 1e-4
    assert json.loads((straight["papo"] / "run.json").read_text())["resumed_inexactly"] is False


def test_checkpoint_files_are_the_size_the_disk_planner_says(straight, tiny_dir):
    """pgpo plan-resources' checkpoint on disk (pgpo.models.resource_plan.disk) against a real one: the weights
    and AdamW's two moments of every parameter (fp32 here), within 1% (safetensors header, pickle framing)."""
    from pgpo.models.memory_estimate import RolloutShape
    from pgpo.models.recipe_plan import model_dims
    from pgpo.models.resource_plan import Layout, disk

    planned = disk(model_dims(str(tiny_dir)), Layout(shape=RolloutShape(1, 1, 1, 1), dtype="float32"))
    ckpt = straight["papo"] / "checkpoint-4"
    for name, key in (("model.safetensors", "checkpoint_weights"), ("optimizer.pt", "checkpoint_optimizer")):
        size = (ckpt / name).stat().st_size
        assert planned[key] <= size <= 1.01 * planned[key], (name, size, planned[key])
    total = sum(p.stat().st_size for p in ckpt.iterdir())
    assert total <= planned["checkpoint"]


def test_rerunning_a_finished_run_changes_nothing(straight, tiny_dir, tiny_data):
    out = straight["dapo"]
    before = {p: p.read_bytes() for p in [out / "run.json", out / "metrics.jsonl", out / "final/model.safetensors"]}
    proc = run(train_cmd(tiny_dir, tiny_data, out, "dapo"))
    assert "already finished" in proc.stdout
    assert {p: p.read_bytes() for p in before} == before


def test_killed_after_the_last_checkpoint_trains_no_extra_step(straight, tiny_dir, tiny_data, tmp_path):
    """Killed between checkpoint-<max_steps> and run.json: the rerun writes final/ from that checkpoint."""
    out = tmp_path / "late"
    shutil.copytree(straight["papo"], out)
    shutil.rmtree(out / "final")
    (out / "run.json").unlink()
    run(train_cmd(tiny_dir, tiny_data, out, "papo"))
    assert json.loads((out / "run.json").read_text())["global_steps"] == STEPS
    assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))
    ref, got = weights(straight["papo"] / "final"), weights(out / "final")
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_a_changed_recipe_on_an_existing_run_refuses_naming_both(straight, tiny_dir, tiny_data, tmp_path):
    out = straight["papo"]
    proc = run(train_cmd(tiny_dir, tiny_data, out, "papo", "--set", "optim.lr=0.5"), check=False)
    assert proc.returncode == 2
    assert "holds a run of another recipe/method" in proc.stderr and "optim.lr" in proc.stderr
    assert "-> 0.5" in proc.stderr and "--fresh" in proc.stderr
    proc = run(train_cmd(tiny_dir, tiny_data, out, "dapo"), check=False)  # another method: refused too
    assert proc.returncode == 2 and "method." in proc.stderr


def test_an_incomplete_checkpoint_is_skipped_with_a_warning(tmp_path):
    from pgpo.training.run import last_complete_checkpoint

    for step, complete in ((1, True), (2, True), (3, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        if complete:
            torch.save({"step": step}, ckpt / "optimizer.pt")
            (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        else:
            (ckpt / "optimizer.pt").write_bytes(b"\0" * 10)  # truncated, as a full disk leaves it
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')  # cut mid-write
    with pytest.warns(UserWarning, match="incomplete"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]


def test_a_checkpoint_with_a_truncated_file_is_skipped_for_the_previous_complete_one(straight, tiny_dir, tiny_data,
                                                                                    tmp_path):
    """Issue 23: a checkpoint whose model.safetensors was cut after its trainer_state.json was written stopped the
    resume with safetensors' raw error and no path. Now it is named, deleted, and the previous checkpoint resumes
    to the uninterrupted run's weights."""
    out = tmp_path / "run"
    shutil.copytree(straight["dapo"], out, ignore=shutil.ignore_patterns("final", "run.json", "README.md"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    weights_file = out / "checkpoint-4" / "model.safetensors"
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[: len(data) // 2])
    proc = run(train_cmd(tiny_dir, tiny_data, out, "dapo"))
    assert (f"checkpoint-4 is incomplete (model.safetensors: {len(data) // 2} bytes, its header describes "
            f"{len(data)})") in proc.stderr
    done = json.loads((out / "run.json").read_text())
    assert done["resumed_from"].endswith("checkpoint-3") and done["global_steps"] == STEPS
    ref, got = weights(straight["dapo"] / "final"), weights(out / "final")
    assert max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref) <= 1e-6
    assert metrics(out) == metrics(straight["dapo"])


@pytest.mark.parametrize("name, cut", [("model.safetensors", 0.5), ("optimizer.pt", 0.9), ("rng_state.pth", 0.5),
                                       ("scheduler.pt", 0.5), ("trainer_state.json", 0.5)])
def test_every_file_of_a_checkpoint_is_checked(straight, tmp_path, name, cut):
    from pgpo.training.checkpoints import checkpoint_problem

    ckpt = tmp_path / "checkpoint-4"
    shutil.copytree(straight["dapo"] / "checkpoint-4", ckpt)
    assert checkpoint_problem(ckpt) is None
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: int(len(data) * cut)])
    problem = checkpoint_problem(ckpt)
    assert problem is not None and problem.startswith(f"{name}: "), problem


@pytest.fixture
def small_disk(tmp_path):
    """A real 50 MB filesystem (tmpfs): room for two 21 MB tiny checkpoints, not for a third."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named_and_the_run_resumes_once_space_is_free(small_disk, tiny_dir, tiny_data):
    out = small_disk / "run"
    cmd = train_cmd(tiny_dir, tiny_data, out, "papo", "--set", "save_total_limit=4")
    proc = run(cmd, check=False)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert f"no space left on device: the disk mounted at {small_disk}" in proc.stderr
    assert "MB free of 50 MB" in proc.stderr
    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    with_space = run(cmd)
    assert "incomplete" in with_space.stderr  # the cut checkpoint was skipped, with a warning
    done = json.loads((out / "run.json").read_text())
    assert done["global_steps"] == STEPS and done["resumed_from"].endswith("checkpoint-2")


def in_process_trainer(tiny_dir, tiny_data, out, method="grpo"):
    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 4, "max_steps": 2, "save_steps": 10}
    trainer = build_trainer(load_train_config(RECIPE, raw), load_method(method), out)
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
    return trainer


def test_a_nan_reward_neutralises_its_group(tiny_dir, tiny_data, tmp_path):
    trainer = in_process_trainer(tiny_dir, tiny_data, tmp_path / "run")
    g = trainer.num_generations

    def accuracy_reward(completions, **_):  # group 0 has a NaN; both groups have reward variance
        return [1.0, float("nan"), 0.0, 1.0, 1.0, 0.0, 1.0, 0.0][:len(completions)]

    trainer.reward_funcs[0] = accuracy_reward
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(g)]
    trainer.model.train()
    with pytest.warns(UserWarning, match="1 completion\\(s\\) with a NaN reward"):
        out = trainer._generate_and_score_completions(rows)
    adv = out["advantages"]
    adv = adv if adv.dim() == 1 else adv.sum(dim=1)
    assert torch.count_nonzero(adv[:g]) == 0, adv  # the poisoned group carries no advantage
    assert torch.count_nonzero(adv[g:]) > 0, adv  # the healthy group still learns
    assert torch.isfinite(adv).all()
    assert trainer._metrics["train"]["faults/nan_reward_completions"][-1] == 1.0
    assert trainer._metrics["train"]["faults/neutralised_groups"][-1] == 1.0


def test_a_nan_log_prob_never_reaches_the_optimizer(tiny_dir, tiny_data, tmp_path):
    """NaN logits for one completion in every loss forward (as a bf16 overflow gives): the run completes,
    the weights stay finite, and the skipped micro-batches are counted in metrics.jsonl."""
    out = tmp_path / "run"
    trainer = in_process_trainer(tiny_dir, tiny_data, out)

    def poison(module, args, output):
        if torch.is_grad_enabled():  # the loss forward, not the sampling
            output = output.clone()
            output[0] = float("nan")
            return output
        return None

    # TRL fuses the LM head into its log-prob computation: poison the hidden states that feed it
    trainer.model.get_submodule("model.language_model.norm").register_forward_hook(poison)
    with pytest.warns(UserWarning, match="non-finite loss"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["faults/skipped_microbatch_fraction"] > 0 and r["faults/nonfinite_logp_completions"] >= 1
               for r in rows)


def test_a_nan_rollout_log_prob_neutralises_its_group(tiny_dir, tiny_data, tmp_path):
    """VPPO (a batch-level shaper) computes the image-conditioned log-probs at rollout: a NaN there takes the
    group's advantage to 0 and never reaches the dependency statistics (a NaN S would poison VPPO's batch min-max
    and mean)."""
    trainer = in_process_trainer(tiny_dir, tiny_data, tmp_path / "run", method="vppo")
    g = trainer.num_generations
    trainer.reward_funcs[0] = lambda completions, **_: [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0][:len(completions)]
    trainer.reward_funcs[0].__name__ = "accuracy_reward"
    image_logprobs = trainer._image_logprobs

    def poisoned(out, micro, force=False):  # the rollout's own pass (not the blind view's forced ones)
        logps = image_logprobs(out, micro, force)
        if not force:
            logps = logps.clone()
            logps[1, 0] = float("nan")
        return logps

    trainer._image_logprobs = poisoned
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(g)]
    trainer.model.train()
    with pytest.warns(UserWarning, match="non-finite rollout log-probs: 1 group"):
        out = trainer._generate_and_score_completions(rows)
    adv = out["advantages"]
    assert torch.isfinite(adv).all()
    assert torch.count_nonzero(adv[:g]) == 0 and torch.count_nonzero(adv[g:]) > 0, adv
    m = trainer._metrics["train"]
    assert m["faults/nonfinite_logp_groups"][-1] == 1.0 and m["dependency/mean"][-1] == m["dependency/mean"][-1]


def test_a_run_recorded_before_a_recipe_field_existed_is_the_same_run(tmp_path):
    """run_config.json written by an older version lacks fields added since (at their defaults): resuming it is not
    a conflict; a recorded value that differs still is."""
    from dataclasses import asdict

    from pgpo.config.schema import RunConflict, load_method, load_train_config
    from pgpo.records.stages import RunRecord, write_run
    from pgpo.training.run import check_output_dir, run_identity

    cfg, method = load_train_config(RECIPE), load_method("dapo")
    identity = run_identity(cfg, method)
    old = asdict(cfg)
    old.pop("save_model_only")
    old["rollout"].pop("vllm_sleep_mode")
    write_run(tmp_path, RunRecord(method=asdict(method), config=old, config_hash="x", finished=False))
    assert check_output_dir(tmp_path, identity) == "resume"
    old["rollout"]["temperature"] = 0.5
    write_run(tmp_path, RunRecord(method=asdict(method), config=old, config_hash="x", finished=False))
    with pytest.raises(RunConflict, match=r"rollout.temperature: 0.5 -> 1.0"):
        check_output_dir(tmp_path, identity)
