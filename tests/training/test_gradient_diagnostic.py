"""The gradient diagnostic (issue 21 item 3) on the tiny Qwen2.5-VL: 4 prompt groups, rolled out once, shaped by
three methods; the structure of what it reports."""

import json

import pytest
import torch
from signal_rewards import signal

from pgpo.config.schema import REPO, ConfigError, load_method, load_train_config

pytestmark = pytest.mark.slow
ORACLE = REPO / "baselines/variants/dapo_oracle.yaml"


def _cfg(model, tiny_data, **over):
    raw = {"model": {"path": str(model)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 16, "max_steps": 1, "save_steps": 1}
    raw.update(over)
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)


@pytest.fixture(scope="module")
def checkpoint(tiny_dir, tiny_data, tmp_path_factory):
    """One DAPO step (every group with signal) from the tiny model: checkpoint-1 holds the optimizer's second
    moments."""
    from pgpo.training.run import train

    out = tmp_path_factory.mktemp("ckpt")
    train(_cfg(tiny_dir, tiny_data, rewards=signal(None)), load_method("dapo"), out)
    assert (out / "checkpoint-1" / "optimizer.pt").is_file()
    return out / "checkpoint-1"


def test_the_diagnostic_on_four_groups(checkpoint, tiny_data, tmp_path, monkeypatch):
    from pgpo.training.gradient_diagnostic import diagnose

    methods = [load_method("dapo"), load_method("pgpo"), load_method(ORACLE)]
    result = diagnose(_cfg(checkpoint, tiny_data, rewards=signal()), methods, "dapo_oracle", 4, tmp_path, bootstrap=200)
    assert result["groups"] == 4 and result["prompts_drawn"] >= 4 and result["parameters"] > 0
    assert result["preconditioner"].startswith("Adam second moments")  # checkpoint-1 has optimizer.pt
    saved = json.loads((tmp_path / "gradient_diagnostic.json").read_text())
    assert saved["methods"] == ["dapo", "pgpo", "dapo_oracle"]
    for view in ("raw", "adam"):
        per = saved[view]["per_estimator"]
        assert per["dapo_oracle"]["cosine_of_means"]["value"] == pytest.approx(1.0)  # the reference with itself
        assert per["dapo"]["signal"]["value"] != pytest.approx(per["pgpo"]["signal"]["value"], rel=1e-6)
        assert per["dapo"]["noise"]["value"] > 0 and per["pgpo"]["noise"]["value"] > 0
        for name in saved["methods"]:
            for stat, cell in per[name].items():
                if cell["ci95"] is not None:
                    lo, hi = cell["ci95"]
                    assert lo <= hi, (view, name, stat)
            assert -1.0 - 1e-9 <= per[name]["cosine_of_means"]["value"] <= 1.0 + 1e-9
        ratio = saved[view]["noise_scale_ratio"]
        if ratio["dapo"]["pgpo"]["value"] is not None:
            assert ratio["dapo"]["pgpo"]["value"] == pytest.approx(1 / ratio["pgpo"]["dapo"]["value"])
    assert saved["raw"] != saved["adam"]
    table = (tmp_path / "gradient_diagnostic.md").read_text()
    assert "| dapo_oracle |" in table and "Adam-preconditioned" in table


def test_group_gradients_are_the_training_loss_gradient(checkpoint, tiny_data, tmp_path, monkeypatch):
    """The mean over groups of the per-group gradients is the gradient of TRL's dapo loss on all the groups at
    once (one shared normaliser), and the Adam moments come from the checkpoint's optimizer state."""
    from pgpo.training.gradient_diagnostic import adam_second_moments, collect_groups, group_gradients, trainable
    from pgpo.training.run import build_trainer

    trainer = build_trainer(_cfg(checkpoint, tiny_data, rewards=signal()), load_method("dapo"), tmp_path)
    trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation
    trainer.model.train()
    torch.manual_seed(0)
    rollout, _ = collect_groups(trainer, 4, seed=0)
    tokens = float(rollout["completion_mask"].sum())
    per_group = group_gradients(trainer, load_method("dapo"), rollout, 4, tokens / 4)
    whole = group_gradients(trainer, load_method("dapo"), rollout, 1, tokens)
    assert ((per_group.mean(0) - whole[0]).norm() / whole[0].norm()).item() < 1e-5 and whole.abs().sum() > 0
    v, source = adam_second_moments(trainer, checkpoint)
    assert v is not None and source.startswith("Adam second moments") and (v >= 0).all()
    assert v.numel() == sum(p.numel() for _, p in trainable(trainer.model)) and (v > 0).float().mean() > 0.5
    assert adam_second_moments(trainer, tmp_path)[0] is None  # no optimizer.pt: the caller falls back


def test_methods_with_other_losses_or_a_missing_reference_are_refused(checkpoint, tiny_data, tmp_path):
    from pgpo.training.gradient_diagnostic import diagnose

    cfg = _cfg(checkpoint, tiny_data)
    with pytest.raises(ConfigError, match="other loss settings"):
        diagnose(cfg, [load_method("dapo"), load_method("grpo")], "dapo", 4, tmp_path)
    with pytest.raises(ConfigError, match="not among the methods"):
        diagnose(cfg, [load_method("dapo")], "pgpo", 4, tmp_path)
