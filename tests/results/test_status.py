"""`pgpo status`: training and evaluation progress read from the files a workflow writes (synthetic directories
laid out as pgpo/training/run.py, pgpo evaluate and the workflow's log rules write them, plus one real training)."""

import json
import os

import pytest

from pgpo.results.status import evaluation_status, format_status, log_error, status, training_status

NOW = 1_800_000_000.0  # a fixed clock: file times are set relative to it


def _touch(path, text="", age=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age, NOW - age))
    return path


def _run(root, rel, max_steps=30, steps=(), age=0.0, finished=False):
    run = root / rel
    config = {"method": {"name": "grpo"}, "config": {"max_steps": max_steps}, "config_hash": "abc"}
    _touch(run / "run_config.json", json.dumps(config), age)
    rows = [{"step": s, "loss": 0.1, "reward": 0.1 * s, "step_time": 2.0} for s in steps]
    if rows:
        _touch(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows), age)
    if finished:
        _touch(run / "run.json", json.dumps({**config, "global_steps": steps[-1], "wall_seconds": 61.5}), age)
    return run


def test_running_training_reports_step_reward_and_eta_from_step_time(tmp_path):
    run = _run(tmp_path, "runs/tiny/grpo-s0", steps=[1, 2, 3])
    st = training_status(run, "runs/tiny/grpo-s0", now=NOW)
    assert (st.state, st.step, st.max_steps) == ("running", 3, 30)
    assert st.reward == pytest.approx(0.3) and st.seconds_per_step == 2.0 and st.eta_seconds == 2.0 * 27


def test_eta_uses_the_wall_clock_between_the_newest_checkpoints(tmp_path):
    run = _run(tmp_path, "runs/tiny/grpo-s0", steps=[1, 2, 3, 4])
    _touch(run / "checkpoint-2" / "trainer_state.json", "{}", age=20)
    _touch(run / "checkpoint-4" / "trainer_state.json", "{}", age=10)  # 2 steps in 10 s: saves included
    st = training_status(run, "r", now=NOW)
    assert st.seconds_per_step == pytest.approx(5.0) and st.eta_seconds == pytest.approx(5.0 * 26)


def test_finished_starting_stale_and_failed_trainings(tmp_path):
    done = _run(tmp_path, "runs/tiny/dapo-s0", steps=[1, 2], max_steps=2, finished=True, age=99999)
    assert training_status(done, "d", now=NOW).state == "finished"  # old files: finished, not stale
    starting = _run(tmp_path, "runs/tiny/papo-s0")
    assert training_status(starting, "s", now=NOW).state == "starting"
    stale = _run(tmp_path, "runs/tiny/vppo-s0", steps=[1], age=4000)
    st = training_status(stale, "v", now=NOW, stale_after=1800)
    assert st.state == "stale" and st.eta_seconds is None and "nothing written for 67 min" in st.note
    failed = _run(tmp_path, "runs/tiny/pgpo-s0", steps=[1])
    log = _touch(tmp_path / "logs/train/tiny/pgpo-s0.log",
                 "step 1/30 reward 0.100\nTraceback (most recent call last):\n  File \"x\", line 1\n"
                 "RuntimeError: CUDA out of memory\n")
    st = training_status(failed, "p", log=log, now=NOW)
    assert st.state == "failed" and st.note == "RuntimeError: CUDA out of memory"


def test_log_error_only_counts_how_a_log_ends():
    assert log_error(["step 1/3", "pgpo train: error: model.path: /nope: no such directory"]) \
        == "pgpo train: error: model.path: /nope: no such directory"
    assert log_error(["UserWarning: an error rate of 0 is suspicious", "step 2/30 reward 0.4"]) is None
    assert log_error(["step 9/30", "Killed"]) == "Killed"
    assert log_error([]) is None


def test_evaluation_progress_from_the_log_and_samples(tmp_path):
    ev = tmp_path / "eval/tiny/grpo-s0"
    _touch(ev / "samples/tiny_count.jsonl", "{}\n")
    log = _touch(tmp_path / "logs/eval/tiny/grpo-s0/tiny.log",
                 "[1/2] tiny_count: 8 samples per question (pgpo_vlm)\npgpo_vlm sampling 400/400 0.5 s/request eta 0 s\n"
                 "[2/2] tiny_colour: 8 samples per question (pgpo_vlm)\npgpo_vlm sampling 10/40 0.5 s/request eta 15 s\n"
                 "pgpo_vlm sampling 20/40 0.5 s/request eta 10 s\n")
    st = evaluation_status(ev, "e", "tiny", log, now=NOW)
    assert (st.state, st.current, st.requests, st.eta_seconds) == ("running", "2/2 tiny_colour", (20, 40), 10.0)
    assert st.benchmarks_done == ["tiny_count"]
    _touch(ev / "shard-tiny.json", json.dumps({"benchmarks": {"tiny_count": {"avg_at_k": 0.5},
                                                              "tiny_colour": {"avg_at_k": 0.25}}}))
    st = evaluation_status(ev, "e", "tiny", log, now=NOW)
    assert st.state == "finished" and st.scores == {"tiny_count": 0.5, "tiny_colour": 0.25}


def test_status_of_a_workflow_root_lists_every_run_and_job(tmp_path, capsys):
    from pgpo.cli import main

    _run(tmp_path, "runs/tiny/grpo-s0", steps=[1, 2, 3])
    _run(tmp_path, "ablation/tiny/tau~0.4/beta~2/s0", steps=[1, 2], max_steps=2, finished=True)
    _touch(tmp_path / "runs/tiny/grpo-s0/checkpoint-2/metrics.jsonl")  # inside a checkpoint: not a run
    _touch(tmp_path / "logs/eval/tiny/base/tiny.log", "[1/7] tiny_count: 8 samples per question (pgpo_vlm)\n")
    by_hand = tmp_path / "eval/tiny/by-hand"
    _touch(by_hand / "samples/tiny_count.jsonl", "{}\n")
    _touch(by_hand / "tiny_count.json", json.dumps({"avg_at_k": 0.75, "k": 8, "per_question": []}))
    st = status(tmp_path, now=NOW)
    assert [(t.name, t.state) for t in st["trainings"]] == [("ablation/tiny/tau~0.4/beta~2/s0", "finished"),
                                                            ("runs/tiny/grpo-s0", "running")]
    assert [(e.name, e.state) for e in st["evaluations"]] == [("eval/tiny/base [tiny]", "running"),
                                                              ("eval/tiny/by-hand", "finished")]
    text = format_status(st, now=NOW)
    assert "running   runs/tiny/grpo-s0 step 3/30 reward 0.300 2 s/step eta 54 s (" in text
    assert "eval/tiny/by-hand 1 benchmark(s), mean avg@k 0.750" in text and "now 1/7 tiny_count" in text
    assert text.endswith("total: 2 finished, 2 running")
    assert main(["status", str(tmp_path)]) == 0
    assert "runs/tiny/grpo-s0 step 3/30" in capsys.readouterr().out


@pytest.mark.parametrize("broken", ["run.json", "run_config.json", "metrics.jsonl", "summary.json"])
def test_one_cut_file_is_listed_as_broken_and_the_rest_still_shows(tmp_path, capsys, broken):
    """Issue 23: `pgpo status` died on one cut JSON file with a raw JSONDecodeError and listed nothing."""
    from pgpo.cli import main

    good = _run(tmp_path, "runs/tiny/grpo-s0", steps=[1, 2, 3])
    bad = _run(tmp_path, "runs/tiny/dapo-s0", steps=[1, 2], max_steps=2, finished=broken == "run.json")
    _touch(tmp_path / "logs/eval/tiny/base/tiny.log", "[1/7] tiny_count: 8 samples per question (pgpo_vlm)\n")
    if broken == "summary.json":
        bad = tmp_path / "eval/tiny/by-hand"
        _touch(bad / "samples/tiny_count.jsonl", "{}\n")
    text = (bad / broken).read_text() if (bad / broken).exists() else '{"benchmarks": {"tiny_count": 0.5}}'
    (bad / broken).write_text(text[: len(text) // 2 - 10] + ("\n" if broken == "metrics.jsonl" else ""))
    if broken == "metrics.jsonl":  # a torn line before the last: not a live append, a broken file
        (bad / broken).write_text((bad / broken).read_text() + json.dumps({"step": 2, "reward": 0.2}) + "\n")
    st = status(tmp_path, now=NOW)
    rows = {x.name: x for x in st["trainings"] + st["evaluations"]}
    name = str(bad.relative_to(tmp_path))
    assert rows[name].state == "broken" and str(bad / broken) in rows[name].note, rows[name]
    assert rows[str(good.relative_to(tmp_path))].state == "running"
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"broken    {name}" in out and "runs/tiny/grpo-s0 step 3/30" in out


@pytest.mark.slow
def test_status_of_a_real_one_step_training(tiny_dir, tiny_data, tmp_path):
    from pgpo.config.schema import REPO, load_method, load_train_config
    from pgpo.training.run import train

    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
        "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 4},
        "micro_batch": 4, "max_steps": 1, "save_steps": 1})
    run_dir = tmp_path / "runs/tiny/grpo-s0"
    train(cfg, load_method("grpo"), run_dir)
    reward = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["reward"]
    (t,) = status(tmp_path)["trainings"]
    assert (t.name, t.state, t.step, t.max_steps, t.reward) == ("runs/tiny/grpo-s0", "finished", 1, 1, reward)
    (run_dir / "run.json").unlink()  # as if still training after its first checkpoint
    (t,) = status(tmp_path)["trainings"]
    assert (t.state, t.step, t.max_steps) == ("running", 1, 1) and t.eta_seconds == 0
