"""The memory and disk planner (pgpo/models/resource_plan.py, `pgpo plan-resources`): hand-checked components,
the counts against the real models (PEFT's adapters, transformers' parameters), the shipped hardware recipes
against the hardware they are for, and the workflow's dry run refusing a recipe that does not fit.

Checkpoint sizes against real checkpoints: tests/training/test_faults.py and test_lora.py. The passes' activation
peaks against measurements at the real widths: benchmarks/real_dimensions.py (ratios 0.99-1.16)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pgpo.config.schema import LoraConfig, load_train_config
from pgpo.config.yamlconf import ConfigError
from pgpo.models.memory_estimate import ModelDims, RolloutShape
from pgpo.models.recipe_plan import KNOWN_MODELS, model_dims, plan_recipe
from pgpo.models.resource_plan import GIB, Hardware, Layout, _badness, disk, lora_params, plan, suggest

REPO = Path(__file__).parents[2]
QWEN = REPO / "tests" / "fixtures" / "qwen"
TRAIN = REPO / "workflows" / "config" / "train"
DIMS_3B = KNOWN_MODELS["Qwen/Qwen2.5-VL-3B-Instruct"]
DIMS_7B = KNOWN_MODELS["Qwen/Qwen2.5-VL-7B-Instruct"]
SHAPE = RolloutShape(rows=8, prompt_text_tokens=1024, visual_tokens=1280, completion_tokens=2048, images=4)


def test_the_known_hub_models_are_their_config_files():
    assert DIMS_3B == ModelDims.from_hf_config(json.loads((QWEN / "config_3b.json").read_text()))
    assert DIMS_7B == ModelDims.from_hf_config(json.loads((QWEN / "config.json").read_text()))
    assert model_dims(str(QWEN)) == DIMS_7B  # a local checkpoint: its config.json
    with pytest.raises(ConfigError, match="not a known hub model"):
        model_dims("Qwen/Qwen9-VL-1T")


def test_components_of_the_paper_7b_layout_by_hand():
    p7 = DIMS_7B.params()  # 8,292,166,656
    lay = Layout(shape=SHAPE, zero=3, vllm_utilization=0.4, save_total_limit=3)
    p = plan(DIMS_7B, lay, Hardware(gpus=8, gpu_memory_gib=80))
    assert p.per_gpu["weights"] == 2 * p7 // 8
    assert p.per_gpu["gradients"] == 4 * p7 // 8 and p.per_gpu["optimizer"] == 12 * p7 // 8
    assert p.per_gpu["zero3_gather"] == 2 * 152064 * 3584 * 2  # the embedding: the largest unit gathered
    assert p.per_gpu["vllm"] == int(0.4 * 80 * GIB)
    states = sum(p.per_gpu[k] for k in ("weights", "zero3_gather", "gradients", "optimizer"))
    assert p.phases == {"rollout": states + p.per_gpu["vllm"],
                        "update": states + p.per_gpu["activations"] + p.per_gpu["vllm"]}
    # KV cache: 2 x 28 layers x 512 (4 kv heads x 128) x 2 bytes per token, 8,200 tokens per longest sequence
    kv = int(0.4 * 80 * GIB) - 2 * p7 - GIB
    assert p.kv_sequences == kv // (2 * 28 * 512 * 2 * SHAPE.seq_len) == 35
    d = p.disk
    assert d["checkpoint"] == 2 * p7 + 12 * p7 + 10 * 2**20 and d["final"] == 2 * p7
    assert d["run"] == 4 * d["checkpoint"] + d["final"]  # 3 kept + the one being saved
    slept = plan(DIMS_7B, replace(lay, sleep_mode=True), Hardware(8, 80))
    assert slept.phases["update"] == p.phases["update"] - p.per_gpu["vllm"] + GIB  # the sleeping engine's overhead


def test_plain_data_parallel_and_lora_states():
    p3 = DIMS_3B.params()
    full = plan(DIMS_3B, Layout(shape=SHAPE), Hardware(gpus=2, gpu_memory_gib=80))
    # no DeepSpeed: bf16 weights, gradients (and DDP's bucket copy of them) and AdamW moments, nothing sharded
    assert (full.per_gpu["weights"], full.per_gpu["gradients"], full.per_gpu["optimizer"]) == (2 * p3, 4 * p3, 4 * p3)
    one = plan(DIMS_3B, Layout(shape=SHAPE), Hardware(gpus=1, gpu_memory_gib=80))
    assert one.per_gpu["gradients"] == 2 * p3  # one process: no DDP buckets
    zero2 = disk(DIMS_3B, Layout(shape=SHAPE, zero=2))
    assert zero2["checkpoint_weights"] == 2 * 2 * p3  # model.safetensors + DeepSpeed's 16-bit model states
    # rank 64 on q, k, v, o, gate, up, down of 36 layers: 64 x (2(2048+2048) + 2(2048+256) + 3(2048+11008))
    assert lora_params(DIMS_3B, 64) == 36 * 64 * 51968 == 119_734_272
    lora = plan(DIMS_3B, Layout(shape=SHAPE, lora_rank=64), Hardware(gpus=1, gpu_memory_gib=80))
    a = 119_734_272  # PEFT keeps adapters in fp32: weights, gradients, 2 moments
    assert (lora.per_gpu["weights"], lora.per_gpu["gradients"], lora.per_gpu["optimizer"]) == (2 * p3 + 4 * a,
                                                                                                4 * a, 8 * a)
    assert lora.disk["checkpoint_weights"] == 4 * a and lora.disk["checkpoint_optimizer"] == 8 * a
    assert lora.disk["final"] == 2 * p3 + 4 * a  # the merged model + final/adapter/
    model_only = disk(DIMS_3B, Layout(shape=SHAPE, lora_rank=64, model_only=True))
    assert model_only["checkpoint_optimizer"] == 0
    offload = plan(DIMS_3B, Layout(shape=SHAPE, zero=3, offload_optimizer=True), Hardware(8, 24, 256))
    assert offload.per_gpu["optimizer"] == offload.per_gpu["gradients"] == 0 and offload.cpu == 16 * p3
    assert not plan(DIMS_3B, Layout(shape=SHAPE, zero=3, offload_optimizer=True), Hardware(8, 24, 32)).fits


def test_the_planner_counts_the_adapters_peft_builds_on_the_tiny_model(tiny_dir):
    from peft import get_peft_model

    from pgpo.models.loading import load_model
    from pgpo.training.lora import peft_config

    dims = model_dims(str(tiny_dir))
    model = load_model(tiny_dir)
    assert sum(p.numel() for p in model.parameters()) == dims.params()
    wrapped = get_peft_model(model, peft_config(LoraConfig(rank=4)))
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert trainable == lora_params(dims, 4) > 0


def test_an_engine_that_cannot_hold_one_sequence_and_the_knobs_in_order():
    tight = Layout(shape=SHAPE, zero=3, vllm_utilization=0.1, sleep_mode=True)
    p = plan(DIMS_7B, tight, Hardware(8, 80))
    assert not p.fits and p.kv_sequences == 0 and "vLLM refuses to start" in p.problems[0]
    fixes = suggest(DIMS_7B, tight, Hardware(8, 80))  # only a larger engine helps: the others are passed over
    assert {name for name, _, _ in fixes} == {"rollout.vllm_gpu_memory_utilization: raise it by 0.1"}
    assert fixes[-1][2].fits and fixes[-1][2].kv_sequences >= 1
    over = Layout(shape=SHAPE, zero=0, checkpointing=False, vllm_utilization=0.4)
    steps = suggest(DIMS_3B, over, Hardware(8, 80))
    names = [name for name, _, _ in steps]
    # objective-preserving knobs come first, in order; each is kept; the last plan fits
    assert names[:2] == ["rollout.vllm_sleep_mode: true", "gradient_checkpointing: true"]
    assert steps[-1][2].fits and not any(s[2].fits for s in steps[:-1])
    assert all(_badness(a[2]) > _badness(b[2]) for a, b in itertools.pairwise(steps))  # every step helps
    assert suggest(DIMS_3B, replace(over, sleep_mode=True, checkpointing=True, zero=3, shape=replace(SHAPE, rows=1)),
                   Hardware(8, 80)) == []


@pytest.mark.parametrize("recipe, gpus, memory", [
    ("paper_3b.yaml", 8, 80), ("paper_7b.yaml", 8, 80),  # the paper's 8 x 80 GB
    ("paper_3b_1x80gb_lora.yaml", 1, 80),
    ("paper_3b_8x24gb.yaml", 8, 24), ("paper_3b_8x24gb.yaml", 8, 48),
])
def test_every_hardware_recipe_fits_the_hardware_it_is_for(recipe, gpus, memory):
    cfg = load_train_config(TRAIN / recipe)
    assert cfg.num_processes == gpus
    p, lay, _, steps = plan_recipe(cfg, gpus, memory)
    assert p.fits and steps == [], p.problems
    assert p.kv_sequences >= 8  # the engine decodes several longest sequences at once, not one at a time
    if "lora" in recipe:
        assert lay.lora_rank and not lay.zero and cfg.optim.lr > load_train_config(TRAIN / "paper_3b.yaml").optim.lr
    if "8x24gb" in recipe:
        assert lay.zero == 3 and lay.offload_optimizer and not lay.lora_rank  # still the paper's full update


def test_the_docs_table_is_the_planner_s():
    from pgpo.models.recipe_plan import shipped_table

    table = shipped_table(TRAIN)
    assert table in (REPO / "docs/paper-scale.md").read_text(), "docs/paper-scale.md's planner table is stale; paste:\n" + table


def test_the_paper_recipes_without_sleep_mode_do_not_fit_and_the_planner_says_why():
    cfg = load_train_config(TRAIN / "paper_7b.yaml", {"rollout": {"vllm_sleep_mode": False}})
    p, _, _, steps = plan_recipe(cfg, 8, 80)
    assert not p.fits and "update phase" in p.problems[0]
    assert [s[0] for s in steps] == ["rollout.vllm_sleep_mode: true"]


def test_a_recipe_extends_another_and_a_chain_back_to_itself_is_refused(tmp_path):
    lora = load_train_config(TRAIN / "paper_3b_1x80gb_lora.yaml")
    base = load_train_config(TRAIN / "paper_3b.yaml")
    assert lora.model.lora.rank == 64 and lora.model.path == base.model.path and lora.rollout == base.rollout
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nmax_steps: 3\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular 'extends'"):
        load_train_config(tmp_path / "a.yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "self.yaml").write_text("extends: ../sub/self.yaml\n")  # itself, by another spelling
    with pytest.raises(ConfigError, match="circular 'extends'"):
        load_train_config(tmp_path / "sub" / "self.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_train_config(tmp_path / "c.yaml")


def test_plan_resources_command_prints_the_table_and_exits_3_when_it_does_not_fit():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pgpo.cli", "plan-resources", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=300, check=False)

    ok = cli("--config", "workflows/config/train/paper_3b_8x24gb.yaml", "--gpu-memory", "24", "--runs", "6")
    assert ok.returncode == 0, ok.stderr
    assert "fits" in ok.stdout.splitlines()[-1] and "6 runs" in ok.stdout and "CPU memory" in ok.stdout
    over = cli("--config", "workflows/config/train/paper_7b.yaml", "--gpu-memory", "40", "--json")
    assert over.returncode == 3, over.stderr
    result = json.loads(over.stdout)
    assert not result["fits"] and result["suggestions"] and result["peak"] > 0.9 * 40 * GIB
    bad = cli("--config", "workflows/config/train/paper_3b.yaml", "--set", "model.path=/nowhere")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "/nowhere" in bad.stderr


def test_the_dry_run_refuses_a_profile_whose_recipe_does_not_fit_its_gpus():
    from pgpo.workflow import plan as wf

    cfg = wf.load_profile(REPO / "workflows/config/paper_8x24gb.yaml")
    assert list(cfg["sizes"]) == ["3b"]  # `7b: null` dropped the parent's size
    with pytest.raises(ConfigError, match=r"sizes \['7B'\] set to null, but paper.yaml has no such size"):
        wf.load_profile(REPO / "workflows/config/paper_8x24gb.yaml", {"sizes": {"7B": None}})
    assert cfg["resources"]["train"]["gpu_memory_gib"] == 24
    with pytest.raises(ConfigError, match=r"does not fit resources.train \(8 x 16 GiB\).*first knob"):
        wf.load_profile(REPO / "workflows/config/paper_8x24gb.yaml",
                        {"resources": {"train": {"gpu_memory_gib": 16}}, "train_set": {"micro_batch": 8}})


def test_the_dry_run_plans_the_deepspeed_config_the_launch_command_names():
    from pgpo.models.recipe_plan import launch_accelerate_config

    paper = "accelerate launch --config_file workflows/config/accelerate/zero3.yaml --num_processes 8 -m pgpo.cli train"
    assert launch_accelerate_config(paper) == "workflows/config/accelerate/zero3.yaml"
    assert launch_accelerate_config("accelerate launch --config_file=/abs/z.yaml -m pgpo.cli train") == "/abs/z.yaml"
    assert launch_accelerate_config("pgpo train") == ""  # one process: no DeepSpeed
    assert launch_accelerate_config("/opt/venv/bin/pgpo train") == ""
    assert launch_accelerate_config("srun my_wrapper.sh") is None  # cannot tell: the recipe's accelerate_config
    # the same recipe planned with the launch's offload config fits 8 x 24 GiB; with plain ZeRO-3 it does not
    cfg = load_train_config(TRAIN / "paper_3b_8x24gb.yaml", {"micro_batch": 4})
    offload, _, _, _ = plan_recipe(cfg, 8, 24, accelerate_config="workflows/config/accelerate/zero3_offload.yaml")
    plain, _, _, _ = plan_recipe(cfg, 8, 24, accelerate_config="workflows/config/accelerate/zero3.yaml")
    assert offload.fits and not plain.fits
