"""LoRA training (issue 24, item 1): every method trains through the adapter-wrapped model, only the adapters move,
a killed LoRA run resumes to the uninterrupted weights, and an adapter checkpoint evaluates through lmms-eval."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_runs import RECIPE, kill_at_checkpoint, run, straight_runs, train_cmd

from pgpo.config.schema import load_method, load_train_config

pytestmark = pytest.mark.slow
STEPS = 3
LORA = ("--set", "model.lora.rank=4")


def lora_cmd(tiny_dir, tiny_data, out, method):
    return train_cmd(tiny_dir, tiny_data, out, method, *LORA, steps=STEPS)


@pytest.fixture(scope="module")
def straight(tiny_dir, tiny_data, tmp_path_factory):
    """Uninterrupted LoRA runs of PAPO and VPPO (their loss terms move the weights even at the untrained model's
    zero reward)."""
    return straight_runs(tiny_dir, tiny_data, tmp_path_factory, ("papo", "vppo"), *LORA, steps=STEPS)


@pytest.mark.parametrize("method", ["papo", "vppo"])
def test_lora_steps_move_only_the_adapted_layers(method, straight, tiny_dir):
    out = straight[method]
    assert not (out / "checkpoint-3" / "model.safetensors").exists()  # checkpoints hold the adapter
    adapter = load_file(out / "checkpoint-3" / "adapter_model.safetensors")
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert all("language_model" in k for k in adapter)  # the vision tower has none
    base, final = load_file(tiny_dir / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert base.keys() == final.keys()  # final/ is the merged full model, nothing of PEFT left in it
    # adapter key base_model.model.model.language_model.layers.0.mlp.up_proj.lora_A.weight adapts the language
    # model's layers.0.mlp.up_proj.weight (saved as model.layers.0.mlp.up_proj.weight)
    adapted = {k.split("language_model.")[1].replace(".lora_A.weight", ".weight") for k in adapter if ".lora_A." in k}
    changed = {k for k in base if not torch.equal(base[k], final[k])}
    outside = sorted(k for k in changed if not any(k.endswith(a) and "visual" not in k for a in adapted))
    assert changed and not outside, outside[:5]
    assert (out / "final" / "adapter" / "adapter_model.safetensors").exists()


def test_adapter_checkpoints_are_the_size_the_disk_planner_says(straight, tiny_dir):
    """A LoRA checkpoint: the adapter (fp32, as PEFT keeps it) and its AdamW moments, as
    pgpo.models.resource_plan.disk plans them, within 1% + 64 KB: each of the tiny model's 84 adapter tensors
    costs a header entry (6 KB in all) and its AdamW state a few pickled records (35 KB), nothing at 3B scale."""
    from pgpo.models.memory_estimate import RolloutShape
    from pgpo.models.recipe_plan import model_dims
    from pgpo.models.resource_plan import Layout, disk

    planned = disk(model_dims(str(tiny_dir)), Layout(shape=RolloutShape(1, 1, 1, 1), dtype="float32", lora_rank=4))
    ckpt = straight["papo"] / "checkpoint-3"
    for name, key in (("adapter_model.safetensors", "checkpoint_weights"), ("optimizer.pt", "checkpoint_optimizer")):
        size = (ckpt / name).stat().st_size
        assert planned[key] <= size <= 1.01 * planned[key] + 65536, (name, size, planned[key])


@pytest.mark.parametrize("method", ["pgpo", "vppo", "papo"])
def test_every_pass_of_a_method_goes_through_the_adapters(method, tiny_dir, tiny_data, tmp_path):
    """The blind pass, the loss forward and the shaping run on the PEFT-wrapped policy: a loss with non-zero
    advantages gives gradient to the adapters and to nothing else, and (adapters at their zero start) the token
    visual dependency is the plain model's, bit for bit."""
    from pgpo.models.loading import load_model
    from pgpo.training.blind_forward import blind_forward
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir), "lora": {"rank": 4}}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 8, "max_steps": 1}
    trainer = build_trainer(load_train_config(RECIPE, raw), load_method(method), tmp_path)
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(trainer.num_generations)]
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)  # the method's own rollout: blind log-probs included
    # the untrained model earns no reward: sequence advantages set by hand, shaped in the loss as usual
    batch["advantages"] = torch.tensor([1.0, -0.5, 0.25, 0.75, 0.3, -0.1, 2.0, -1.0])[:len(batch["advantages"])]
    trainer.model.zero_grad(set_to_none=True)
    trainer._compute_loss(trainer.model, batch).backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_" in n for n in grads), sorted(n for n in grads if ".lora_" not in n)[:5]
    assert any(float(g.abs().max()) > 0 for g in grads.values())
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if ".lora_" not in n)
    args = (batch["prompt_ids"], batch["completion_ids"])
    ids = torch.cat(args, dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    extra = (batch.get("mm_token_type_ids"), batch.get("image_grid_thw"), batch["completion_ids"].size(1))
    if extra[0] is None:
        pytest.skip("this TRL batch carries no mm_token_type_ids")
    trainer.model.eval()
    through_adapter = blind_forward(trainer.model, ids, mask, *extra)
    plain = blind_forward(load_model(tiny_dir).eval(), ids, mask, *extra)
    assert torch.equal(through_adapter, plain)


def test_a_killed_lora_run_resumes_to_the_uninterrupted_weights(straight, tiny_dir, tiny_data, tmp_path):
    out = tmp_path / "killed"
    cmd = lora_cmd(tiny_dir, tiny_data, out, "papo")
    kill_at_checkpoint(cmd, out, 2)
    run(cmd)  # the same command continues the run
    assert json.loads((out / "run.json").read_text())["resumed_from"].endswith("checkpoint-2")
    ref, got = load_file(straight["papo"] / "final/model.safetensors"), load_file(out / "final/model.safetensors")
    worst = max(float((ref[k] - got[k]).abs().max()) for k in ref)
    assert worst <= 1e-6, worst
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


def test_an_adapter_checkpoint_evaluates_like_the_merged_model(straight, tiny_data, tmp_path, monkeypatch):
    """`pgpo evaluate` of checkpoint-3 (adapter only: its base named in adapter_config.json) samples what the
    merged final/ of the same step samples."""
    from pgpo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    samples = {}
    for name in ("checkpoint-3", "final"):
        ckpt = tmp_path / name
        shutil.copytree(straight["papo"] / name, ckpt)  # the evaluation writes a model card into it
        out = tmp_path / f"eval-{name}"
        assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_data), "--benchmarks", "tiny_bars",
                     "--samples", "2", "--out", str(out), "--set", "limit=2", "--set", "backend.batch_size=4"]) == 0
        samples[name] = [json.loads(line)["responses"] for line in (out / "samples/tiny_bars.jsonl").open()]
    assert samples["checkpoint-3"] == samples["final"]
    assert Path(json.loads((tmp_path / "checkpoint-3/adapter_config.json").read_text())["base_model_name_or_path"]).is_dir()
