"""Dynamic sampling in real TRL steps on the tiny model: groups whose rewards are all equal (all 0.1 here, 8
completions each) are dropped and get advantage exactly 0, although TRL's own advantages for them are float32
noise above the old 1e-6 keep test; at the round cap the batch is filled, counted, and after
dynamic_sampling.max_capped_steps filled batches in a row the run stops with an error.

The rewards are the paper's two (0.9 x accuracy + 0.1 x format) with controlled values: accuracy 0, format 1 for
every completion except the groups of `SIGNAL_TASKS`, where it alternates 0/1 inside the group (spread 0.1)."""

import json

import pytest
import torch

from pgpo.config.schema import REPO, load_method, load_train_config

pytestmark = pytest.mark.slow


def _trainer(tiny_dir, tiny_data, out, monkeypatch, signal_tasks=(), method_over=None, prompts=4, **over):
    from pgpo.training.run import build_trainer

    # the paper's weights, controlled values (tests/signal_rewards.py, plugged in as a user's own rewards)
    rewards = {"signal_rewards:zero": {"weight": 0.9},
               "signal_rewards:format_alternating": {"weight": 0.1, "params": {"tasks": sorted(signal_tasks)}}}
    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": prompts, "update_prompts": prompts, "num_generations": 8,
                       "max_completion_length": 6},
           "micro_batch": 8, "max_steps": 2, "save_steps": 100, "rewards": rewards, **over}
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)
    return build_trainer(cfg, load_method("dapo", method_over), out)


def test_equal_rewards_at_eight_rollouts_are_dropped_with_advantage_exactly_zero(tiny_dir, tiny_data, tmp_path,
                                                                                  monkeypatch):
    from trl import GRPOTrainer

    trainer = _trainer(tiny_dir, tiny_data, tmp_path, monkeypatch, signal_tasks=("count", "colour"))
    trainer.model.train()
    rows = [trainer.train_dataset[i] for i in range(4) for _ in range(8)]  # tasks count, colour, bars, digit
    assert [rows[8 * k]["task"] for k in range(4)] == ["count", "colour", "bars", "digit"]
    # TRL's own advantages: the two all-0.1 groups carry float32 noise the old test (|A| > 1e-6) kept
    raw = GRPOTrainer._generate_and_score_completions(trainer, rows)["advantages"].view(4, 8).abs().amax(1)
    assert (raw[:2] > 0.5).all() and (raw[2:] > 1e-6).all() and (raw[2:] < 1e-3).all(), raw
    out, keep = trainer._scored_rollout(rows, "train")
    assert keep.tolist() == [True, True, False, False]
    assert out["advantages"].view(4, 8)[2:].eq(0).all() and out["advantages"].view(4, 8)[:2].abs().amax(1).gt(0.5).all()
    assert "rewards" not in out  # popped: TRL's dict goes on unchanged otherwise
    rewards = trainer.rollout(rows)["rewards"]  # the bridge's [B] rewards: TRL's weighting, this process's rows
    assert torch.allclose(rewards.view(4, 8)[2:], torch.tensor(0.1)) and rewards.view(4, 8)[:2].unique().numel() == 2
    assert rewards.nanmean().item() == pytest.approx(trainer._metrics["train"]["reward"][-1], abs=1e-6)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_filled_batches_are_counted_and_stop_the_run_after_the_limit(tiny_dir, tiny_data, tmp_path, monkeypatch):
    from pgpo.training.trainer import DynamicSamplingCapped

    # no group ever has signal: every step reaches max_rounds (2 here) and is filled
    fill = _trainer(tiny_dir, tiny_data, tmp_path / "fill", monkeypatch, prompts=2,
                    method_over={"dynamic_sampling": {"max_rounds": 2, "max_capped_steps": 0}})
    fill.train()
    rows = _metrics(tmp_path / "fill")
    assert [r["dynamic_sampling/capped"] for r in rows] == [1.0, 1.0]
    assert [r["dynamic_sampling/capped_streak"] for r in rows] == [1.0, 2.0]
    assert all(r["dynamic_sampling/filled_groups"] == 2 and r["dynamic_sampling/rounds"] == 2 for r in rows)
    assert all(r["loss"] == 0.0 for r in rows)  # filled groups: advantage exactly 0, no gradient
    stop = _trainer(tiny_dir, tiny_data, tmp_path / "stop", monkeypatch, prompts=2, max_steps=4,
                    method_over={"dynamic_sampling": {"max_rounds": 2, "max_capped_steps": 2}})
    with pytest.raises(DynamicSamplingCapped, match=r"2 consecutive steps \(the last: step 2\) reached max_rounds=2 .*max_capped_steps=0"):
        stop.train()
    assert [r["step"] for r in _metrics(tmp_path / "stop")] == [1]  # the second filled batch stopped it
    # every group has signal: never capped, the streak stays 0
    full = _trainer(tiny_dir, tiny_data, tmp_path / "full", monkeypatch, prompts=2, max_steps=1,
                    signal_tasks=("count", "colour", "bars", "digit", "position", "shape", "polygon", "control"),
                    method_over={"dynamic_sampling": {"max_capped_steps": 1}})
    full.train()
    (row,) = _metrics(tmp_path / "full")
    assert (row["dynamic_sampling/capped"], row["dynamic_sampling/capped_streak"], row["dynamic_sampling/rounds"],
            row["dynamic_sampling/filled_groups"]) == (0.0, 0.0, 1.0, 0.0)
