"""The pixel budget and the context budget: pinned in the recipes, applied to the processor (and the vLLM
engine) in training, recorded in run.json, and a recipe or row that cannot fit refused before any model loads."""

import json

import pytest

from pgpo.config.schema import REPO, ConfigError, load_method, load_train_config

PAPER = REPO / "workflows/config/train/paper_3b.yaml"
TINY = REPO / "workflows/config/train/tiny.yaml"


def test_a_recipe_whose_longest_prompt_cannot_fit_max_model_len_is_refused():
    cfg = load_train_config(PAPER)
    assert (cfg.model.min_pixels, cfg.model.max_pixels, cfg.rollout.max_model_len) == (200704, 1003520, 9216)
    # 4 x (1280 + 2) + 1024 + 2048 = 8200 fits 9216; 8192 does not
    with pytest.raises(ConfigError, match=r"longest prompt .*= 6152 tokens.*2048.*exceeds rollout.max_model_len "
                                          r"\(8192\)"):
        load_train_config(PAPER, {"rollout": {"max_model_len": 8192}})
    load_train_config(PAPER, {"rollout": {"max_model_len": 8200}})  # exactly full is fine
    with pytest.raises(ConfigError, match="model.max_pixels must be pinned on the paper profile"):
        load_train_config(PAPER, {"model": {"max_pixels": 0}})
    with pytest.raises(ConfigError, match="min_pixels .* must be <= model.max_pixels"):
        load_train_config(TINY, {"model": {"min_pixels": 5000, "max_pixels": 4000}})


def test_the_rollout_engine_gets_the_budget():
    from pgpo.training.run import pixel_budget, vllm_engine_kwargs

    cfg = load_train_config(PAPER)
    assert pixel_budget(cfg) == {"min_pixels": 200704, "max_pixels": 1003520}
    assert vllm_engine_kwargs(cfg) == {"limit_mm_per_prompt": {"image": 4},
                                       "mm_processor_kwargs": {"min_pixels": 200704, "max_pixels": 1003520}}
    assert vllm_engine_kwargs(load_train_config(TINY)) == {}  # HF generation: the trainer's processor is used


def test_rows_beyond_the_prompt_budget_are_named_before_the_model_loads(tiny_dir, tiny_data):
    from pgpo.data.datasets import DataError
    from pgpo.training.run import preflight

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")}}
    records = preflight(load_train_config(TINY, raw))
    assert records
    with pytest.raises(DataError, match=r"row\(s\) exceed the recipe's prompt budget; shorten or remove them, or raise the budget in the recipe:\n  .*-000000: \d+ text tokens "
                                        r"> rollout.max_prompt_text_tokens \(8\)"):
        preflight(load_train_config(TINY, {**raw, "rollout": {"max_prompt_text_tokens": 8}}))


@pytest.mark.slow
def test_training_applies_and_records_the_pixel_budget(tiny_dir, tiny_data, tmp_path):
    """The tiny processor ships 112 x 112 = 16 visual tokens per image; a recipe budget of 56 x 56 gives 4, in
    the trainer's processor (hence TRL's rollout), the saved final processor (hence evaluation) and run.json."""
    from pgpo.training.run import build_trainer, train

    raw = {"model": {"path": str(tiny_dir), "min_pixels": 56 * 56, "max_pixels": 56 * 56},
           "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 4, "max_completion_length": 6},
           "micro_batch": 8, "max_steps": 1, "save_steps": 10}
    cfg = load_train_config(TINY, raw)
    trainer = build_trainer(cfg, load_method("grpo"), tmp_path / "probe")
    rows = [trainer.train_dataset[0]] * 4
    trainer.model.train()
    out = trainer.rollout(rows)
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]] * 4  # 16 patches -> 4 visual tokens after the merge
    run = train(cfg, load_method("grpo"), tmp_path / "run")
    assert run.pixel_budget == {"min_pixels": 3136, "max_pixels": 3136, "source": "recipe"}
    saved = json.loads((tmp_path / "run/final/processor_config.json").read_text())["image_processor"]["size"]
    assert (saved["shortest_edge"], saved["longest_edge"]) == (3136, 3136)


def test_a_launch_with_another_world_size_than_the_recipe_is_refused(tiny_dir, tiny_data, monkeypatch):
    """`accelerate launch --cpu --num_processes 2` starts one process: the recipe's batch arithmetic would then
    silently describe another run. The world size the launcher set must be the recipe's num_processes."""
    from pgpo.training.run import preflight

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")}}
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match=r"launched on 1 process\(es\) but the recipe says num_processes=2.*"
                                          r"--multi_gpu"):
        preflight(load_train_config(TINY, {**raw, "num_processes": 2}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert preflight(load_train_config(TINY, {**raw, "num_processes": 2}))
