"""Real TRL training steps on the tiny Qwen2.5-VL: every method, the loss identities (resume after a kill: test_faults.py)."""

import json

import pytest
import torch

from pgpo.config.schema import REPO, TrainConfig, load_method, load_train_config

pytestmark = pytest.mark.slow


def _cfg(tiny_dir, tiny_data, **over) -> TrainConfig:
    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 8, "max_steps": 2, "save_steps": 1, "save_total_limit": 2}
    raw.update(over)
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)


@pytest.fixture(scope="module")
def trainer(tiny_dir, tiny_data, tmp_path_factory):
    from pgpo.training.run import build_trainer

    trainer = build_trainer(_cfg(tiny_dir, tiny_data), load_method("pgpo"), tmp_path_factory.mktemp("trainer"))
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
    return trainer


@pytest.fixture(scope="module")
def rollout(trainer):
    """One raw TRL rollout (before shaping) with non-trivial sequence advantages."""
    from trl import GRPOTrainer

    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(trainer.num_generations)]
    trainer.model.train()
    out = GRPOTrainer._generate_and_score_completions(trainer, rows)
    out["advantages"] = torch.tensor([1.0, -0.5, 0.25, 0.75, 0.3, -0.1, 2.0, -1.0])
    out["rows"] = rows  # the dataset rows, as PGPOTrainer attaches them for the blind view
    return out


def _loss_and_grad(trainer, rollout, advantages):
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(trainer.model, {**rollout, "advantages": advantages})
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    trainer.model.zero_grad(set_to_none=True)
    return loss.detach(), grad


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_unit_token_weights_reproduce_the_plain_loss_exactly(trainer, rollout, loss_type):
    from pgpo.methods.shaping import SHAPERS, PGPOParams, ShapingBatch

    trainer.loss_type = loss_type
    adv, mask = rollout["advantages"], rollout["completion_mask"]
    plain, g_plain = _loss_and_grad(trainer, rollout, adv)
    ident = SHAPERS.get("identity").fn(ShapingBatch(adv, mask), None).token_advantages
    flat = SHAPERS.get("pgpo").fn(ShapingBatch(adv, mask, torch.full(mask.shape, 0.2)), PGPOParams()).token_advantages
    assert plain.item() != 0.0 and g_plain.abs().sum() > 0
    for token_adv in (ident, flat):  # weights forced to 1: bit-identical loss and gradient
        loss, grad = _loss_and_grad(trainer, rollout, token_adv)
        assert torch.equal(loss, plain) and torch.equal(grad, g_plain)
    # real PGPO weights: same on-policy loss value (mass conservation), different gradient
    shaped = SHAPERS.get("pgpo").fn(ShapingBatch(adv, mask, torch.rand(mask.shape, generator=torch.Generator()
                                                                        .manual_seed(0))),
                                    PGPOParams()).token_advantages
    loss, grad = _loss_and_grad(trainer, rollout, shaped)
    assert torch.allclose(loss, plain, atol=1e-5) and not torch.allclose(grad, g_plain, atol=1e-6)


def _shape_through_loss(trainer, rollout):
    """Generation-time shaping, then one loss forward (where a per-response shaper may finish the shaping)."""
    out = trainer._shape_advantages(dict(rollout), "train")
    loss = trainer._compute_loss(trainer.model, out)
    return out, loss


def test_pgpo_shaping_on_a_real_rollout(trainer, rollout):
    out, _ = _shape_through_loss(trainer, rollout)
    adv, mask = out["advantages"], rollout["completion_mask"].bool()
    assert adv.shape == mask.shape and (adv[~mask] == 0).all()
    # mass conservation: per response, the token advantages sum to |o_i| * A_i
    assert torch.allclose(adv.sum(-1), rollout["advantages"] * mask.sum(-1), atol=1e-4)
    m = trainer._metrics["train"]
    # k3 >= 0 by construction; a blind view that hid nothing would give ~0, so demand a real dependency
    assert m["dependency/mean"][-1] > 1e-4 and m["weights/sum_minus_length_absmax"][-1] < 1e-3


def test_shaping_in_the_loss_equals_shaping_from_an_extra_image_pass(trainer, rollout):
    """PGPO on an aligned on-policy step takes the image-conditioned log-probs from the loss forward instead of a
    second pass: same token advantages and the same gradient as computing them at generation time."""
    deferred = trainer._shape_advantages(dict(rollout), "train")
    assert deferred["advantages"].dim() == 1 and "blind_logps" in deferred  # nothing shaped yet: no extra pass
    eager_in = dict(rollout)
    eager_in["old_per_token_logps"] = trainer.policy_logprobs(rollout, 8)  # what the extra pass computes
    eager = trainer._shape_advantages(eager_in, "train")
    assert eager["advantages"].dim() == 2
    eager.pop("old_per_token_logps")  # equal to the loss forward's: the loss needs no old log-probs either
    grads = []
    for batch in (deferred, eager):  # the deferred one is shaped in the loss (its data says so), the eager not
        trainer.model.zero_grad(set_to_none=True)
        trainer._compute_loss(trainer.model, batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    trainer.model.zero_grad(set_to_none=True)
    assert deferred["advantages"].shape == eager["advantages"].shape
    assert torch.allclose(deferred["advantages"], eager["advantages"], atol=1e-5)
    assert (deferred["advantages"] != rollout["advantages"][:, None] * rollout["completion_mask"]).any()
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["grpo", "dapo", "pgpo", "pgpo_grpo", "papo", "vppo"])
def test_every_method_trains_and_writes_checkpoints_and_metrics(tiny_dir, tiny_data, tmp_path, method):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pgpo.training.run import train

    run = train(_cfg(tiny_dir, tiny_data), load_method(method), tmp_path / method)
    assert run.global_steps == 2 and run.method["name"] == method and run.code_version
    rows = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "rewards/accuracy_reward/mean", "completions/mean_length", "entropy",
                "clip_ratio/region_mean"):
        assert key in rows[-1], key
    if load_method(method).dynamic_sampling.enabled:
        ds = {k.split("/")[1]: v for k, v in rows[-1].items() if k.startswith("dynamic_sampling/")}
        max_rounds, groups = load_method(method).dynamic_sampling.max_rounds, 4  # prompts_per_step of _cfg
        assert 1 <= ds["rounds"] <= max_rounds
        drawn = groups * ds["rounds"]
        assert ds["kept_fraction"] == pytest.approx((drawn - ds["dropped_groups"]) / drawn)
        assert ds["filled_groups"] == max(0.0, groups - (drawn - ds["dropped_groups"]))
        assert ds["filled_groups"] == 0 or ds["rounds"] == max_rounds  # refills stop only when full or at the cap
    logged = {"pgpo": {"dependency/mean", "dependency/max", "weights/frac_boosted", "weights/max"},
              "pgpo_grpo": {"dependency/mean", "dependency/max", "weights/frac_boosted"},
              "papo": {"dependency/mean", "dependency/max", "blind/blackened_fraction", "loss_terms/perception_kl",
                       "loss_terms/entropy_penalty", "loss_terms/blind_entropy_penalty"},
              "vppo": {"dependency/mean", "dependency/max", "blind/blackened_fraction", "vppo/kept_fraction",
                       "vppo/alpha_max", "loss_terms/entropy_penalty"}}.get(method, set())
    assert logged <= set(rows[-1]), logged - set(rows[-1])
    if method in ("grpo", "dapo"):
        assert not any(k.startswith(("dependency/", "loss_terms/", "blind/")) for k in rows[-1])
    if method == "vppo":
        assert rows[-1]["dependency/max"] <= 10.0 and rows[-1]["vppo/alpha_mean"] == pytest.approx(1.0, abs=1e-5)
        assert 0.4 <= rows[-1]["vppo/kept_fraction"] < 0.6  # ceil(0.4 n) of short responses
    if method == "papo":
        assert rows[-1]["loss_terms/perception_kl"] > 0
    final = tmp_path / method / "final"
    AutoModelForImageTextToText.from_pretrained(final)
    AutoProcessor.from_pretrained(final)


def test_final_checkpoint_loads_in_lmms_eval(tiny_dir, tiny_data, tmp_path):
    from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL

    from pgpo.training.run import train

    train(_cfg(tiny_dir, tiny_data, max_steps=1), load_method("grpo"), tmp_path / "run")
    pixels = 112 * 112
    lm = Qwen2_5_VL(pretrained=str(tmp_path / "run" / "final"), device="cpu", device_map="cpu",
                    min_pixels=pixels, max_pixels=pixels, attn_implementation="sdpa")
    assert type(lm.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert lm.processor.tokenizer.eos_token == "<|im_end|>"
