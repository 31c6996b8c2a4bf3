"""Rollout samples beside the curves (issue 25, item 2): what a logged rollout holds after real training steps,
and the pure helpers. The kill -9 resume of tests/training/test_faults.py checks the samples equal the
uninterrupted run's."""

import json

import pytest
import torch
from signal_rewards import signal

from pgpo.config.schema import REPO, load_method, load_train_config
from pgpo.records.stages import read_samples, truncate_samples
from pgpo.training.samples import SampleLog, collapse_image_tokens

pytestmark = pytest.mark.slow


def _cfg(tiny_dir, tiny_data, **over):
    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 8, "max_steps": 2, "save_steps": 2, "samples": {"every": 1, "rollouts": 5},
           "rewards": signal(tasks=None)}  # half of every group right: advantages the weights can scale
    raw.update(over)
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)


@pytest.mark.parametrize("method", ["pgpo", "grpo", "vppo"])
def test_logged_rollouts_carry_their_text_reward_advantage_and_token_weights(tiny_dir, tiny_data, tmp_path, method):
    from transformers import AutoTokenizer

    from pgpo.training.run import train

    out = tmp_path / method
    train(_cfg(tiny_dir, tiny_data), load_method(method), out)
    samples = read_samples(out)
    assert [(s["step"], s["index"]) for s in samples] == [(step, i) for step in (1, 2) for i in range(5)]
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    train_ids = {json.loads(line)["id"] for line in (tiny_data / "train.jsonl").read_text().splitlines()}
    metrics = {json.loads(line)["step"]: json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()}
    for s in samples:
        assert s["prompt_id"] in train_ids and s["images"] and all(p.endswith(".png") for p in s["images"])
        assert "<|image_pad|>x" in s["prompt"]  # the visual tokens shown once, with their count
        n = len(s["tokens"])
        assert 1 <= n <= 8 and len(s["token_advantages"]) == n
        assert tok.decode(tok.encode(s["response"])) == s["response"] or s["response"] == ""
        # the signal reward alternates by row inside the batch (format 1 everywhere): a sample got its own row's
        assert s["reward"] == pytest.approx(0.9 * (s["index"] % 2) + 0.1)
        if s["advantage"] == 0:
            assert s["weights"] is None and all(a == 0 for a in s["token_advantages"])
            continue
        w = torch.tensor(s["weights"])
        if method == "grpo":  # sequence credit: every token its response's advantage
            assert torch.allclose(w, torch.ones(n)) and s["dependency"] is None
        if method == "pgpo":  # mass-conserving weights from a per-token dependency
            assert float(w.sum()) == pytest.approx(n, rel=1e-4) and len(s["dependency"]) == n
            assert min(s["dependency"]) >= 0
        if method == "vppo":  # a filter: tokens kept (weight alpha > 0) or dropped (0)
            assert ((w == 0) | (w > 0)).all() and (w == 0).any() and len(s["dependency"]) == n
    # a group's rollouts share their prompt; the first group's rewards have the reward curve's scale
    assert len({s["prompt_id"] for s in samples if s["step"] == 1 and s["index"] < 4}) == 1
    assert set(metrics) == {1, 2}


def test_nothing_is_logged_when_off_or_between_logged_steps(tmp_path):
    class Tok:
        def decode(self, ids, skip_special_tokens=False):
            return " ".join(map(str, ids))

        def batch_decode(self, seqs, skip_special_tokens=False):
            return [self.decode(s) for s in seqs]

    out = {"completion_ids": torch.tensor([[5, 6, 0], [7, 0, 0]]), "completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
           "prompt_ids": torch.tensor([[0, 3], [0, 3]]), "prompt_mask": torch.tensor([[0, 1], [0, 1]]),
           "rollout_rewards": torch.tensor([1.0, float("nan")])}
    rows = [{"id": "a", "images": ["x.png"]}, {"id": "a", "images": ["x.png"]}]
    # (every, optimizer steps done before the rollout, steps one rollout serves, samples logged)
    for every, done, serves, logged in ((0, 3, 1, 0), (4, 2, 1, 0), (4, 7, 1, 2), (4, 1, 2, 0), (4, 2, 2, 2)):
        path = tmp_path / f"s{every}-{done}-{serves}.jsonl"
        log = SampleLog(path, every, 2, Tok(), main_process=True, steps_per_rollout=serves)
        batch = dict(out)
        log.select(batch, rows, done)
        assert batch["sample_slot"].tolist() == ([0, 1] if logged else [-1, -1])
        # shaped in two micro-batches, the second row first (TRL shuffles), each trained in its own step
        for rows_, step in (([1], done + 1), ([0], done + serves)):
            micro = {k: v[rows_] for k, v in batch.items()}
            log.observe(micro, torch.tensor([0.5, -0.5])[rows_], torch.tensor([[1.0, 0.0, 0.0], [-0.5, 0, 0]])[rows_],
                        None)
            assert not path.exists()  # nothing written before every sample knows its step
            log.stamp(micro, step)
        got = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        assert len(got) == logged
        if logged:
            # written once the rollout's last one is trained on, in index order, each with its own step
            assert [(g["index"], g["tokens"], g["reward"], g["step"]) for g in got] == [
                (0, ["5", "6"], 1.0, done + serves), (1, ["7"], None, done + 1)]
            assert got[0]["weights"] == [2.0, 0.0] and got[0]["response"] == "5 6" and got[1]["weights"] == [1.0]
    SampleLog(tmp_path / "rank1.jsonl", 1, 2, Tok(), main_process=False).select(dict(out), rows, 0)
    assert not (tmp_path / "rank1.jsonl").exists()


def test_a_rollout_serving_two_steps_is_sampled_when_either_is_due_and_labelled_by_the_step_it_trained(
        tiny_dir, tiny_data, tmp_path):
    from pgpo.training.run import train

    # prompts_per_step = 2 x update_prompts (the paper's recipes: 3x): one rollout, then two optimizer steps
    cfg = _cfg(tiny_dir, tiny_data, rollout={"prompts_per_step": 4, "update_prompts": 2, "num_generations": 4,
                                             "max_completion_length": 8},
               samples={"every": 2, "rollouts": 8}, max_steps=2)
    train(cfg, load_method("grpo"), tmp_path / "run")
    samples = read_samples(tmp_path / "run")
    assert len(samples) == 8 and [s["index"] for s in samples] == list(range(8))  # step 2 due: its rollout is too
    assert {s["step"] for s in samples} == {1, 2}  # TRL shuffled them over both steps


def test_what_is_logged_is_not_part_of_the_run(tiny_dir, tiny_data):
    from pgpo.training.run import run_identity

    method = load_method("pgpo")
    base = run_identity(_cfg(tiny_dir, tiny_data), method)
    other = run_identity(_cfg(tiny_dir, tiny_data, samples={"every": 3, "rollouts": 1}, report_to=["tensorboard"]),
                         method)
    assert base["hash"] == other["hash"]  # a resume may add TensorBoard or log more samples
    assert base["hash"] != run_identity(_cfg(tiny_dir, tiny_data, seed=1), method)["hash"]


def test_resume_keeps_the_samples_up_to_its_checkpoint(tmp_path):
    lines = [{"step": s, "index": i} for s in (2, 4, 6) for i in (0, 1)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 8, "ind')
    with pytest.raises(Exception, match=r"samples.jsonl:7: not a rollout sample"):
        read_samples(tmp_path)  # a finished run's cut file is named, not silently shorter
    assert len(read_samples(tmp_path, live=True)) == 6  # a run being written (or killed writing) skips it
    truncate_samples(tmp_path, 4)
    assert [r["step"] for r in read_samples(tmp_path)] == [2, 2, 4, 4]
    truncate_samples(tmp_path, None)
    assert read_samples(tmp_path) == []


def test_image_token_runs_are_shown_once_with_their_count():
    text = "<|vision_start|>" + "<|image_pad|>" * 64 + "<|vision_end|>What?"
    assert collapse_image_tokens(text) == "<|vision_start|><|image_pad|>x64<|vision_end|>What?"
    assert collapse_image_tokens("<|image_pad|>") == "<|image_pad|>"


def test_a_sampled_response_renders_with_its_tokens_coloured_by_weight(tmp_path):
    from pgpo.results.samples_view import pick_sample, samples_section, token_colour

    assert token_colour(1.0) == "rgba(0,160,0,0.00)" and token_colour(3.0) == "rgba(0,160,0,1.00)"
    assert token_colour(0.0) == "rgba(210,0,0,1.00)" and token_colour(None) == "#eeeeee"
    run = tmp_path / "run"
    run.mkdir()
    base = {"prompt_id": "p<1>", "prompt": "", "images": [], "response": "", "token_advantages": [], "reward": 1.0}
    lines = [{**base, "step": 2, "index": 0, "tokens": ["a"], "advantage": 0.0, "weights": None, "dependency": None},
             {**base, "step": 4, "index": 0, "tokens": ["x"], "advantage": 0.0, "weights": None, "dependency": None},
             {**base, "step": 4, "index": 1, "tokens": ["<b>", "c"], "advantage": 0.5, "weights": [2.0, 0.0],
              "dependency": [0.3, 0.001]}]
    (run / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert pick_sample(run)["index"] == 1  # the newest step, the first one with a signal
    page = samples_section({"pgpo": {"0": str(run)}, "base": {}})
    assert "<h4>pgpo</h4>" in page and "&lt;b&gt;" in page and "p&lt;1&gt;" in page  # escaped
    assert "title='weight 2.000, S 0.3000' style='background:rgba(0,160,0,0.50)" in page
    assert "background:rgba(210,0,0,1.00)" in page and samples_section({"m": {"0": str(tmp_path)}}) == ""
