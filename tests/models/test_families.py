"""Model families (pgpo/models/families, issue 24 item 3): a tiny Qwen3-VL built offline like the tiny Qwen2.5-VL
goes through the same code: the blind view (dropping the visual columns equals masking them out of attention,
also with Qwen3-VL's DeepStack features injected at the visual positions), the prompt budgets with its 32-pixel
visual tokens, PGPO training and lmms-eval evaluation."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pgpo.config.schema import REPO, ConfigError, load_train_config, longest_prompt_tokens
from pgpo.models.families import FAMILIES, family_for, family_of_config
from pgpo.tiny.model import TinyModelConfig, build_tiny


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny_qwen3"), TinyModelConfig(family="qwen3_vl"))


def test_each_checkpoint_and_hub_id_finds_its_family(tiny_dir, tiny_qwen3):
    assert sorted(FAMILIES) == ["qwen2_5_vl", "qwen3_vl"]
    assert family_for(str(tiny_dir)).name == "qwen2_5_vl" and family_for(str(tiny_qwen3)).name == "qwen3_vl"
    assert family_for("Qwen/Qwen3-VL-8B-Instruct").visual_token_pixels == 32 * 32
    assert family_for("Qwen/Qwen2.5-VL-7B-Instruct").visual_token_pixels == 28 * 28
    with pytest.raises(ConfigError, match="model_type 'llava' is not a family"):
        family_of_config({"model_type": "llava"})
    assert json.loads((tiny_qwen3 / "config.json").read_text())["vision_config"]["deepstack_visual_indexes"] == [0]
    # an adapter folder: its base's family, also when the base is a hub id
    adapter = tiny_qwen3.parent / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen3-VL-2B-Instruct"}))
    assert family_for(str(adapter)).name == "qwen3_vl"
    with pytest.raises(ConfigError, match="model.family: unknown model family 'qwen9'"):
        load_train_config(REPO / "workflows/config/train/tiny.yaml", {"model": {"family": "qwen9"}})
    from pgpo.models.recipe_plan import model_dims

    with pytest.raises(ConfigError, match="model Qwen2.5-VL only"):  # the planner says what it cannot count
        model_dims(str(tiny_qwen3))


def _rollout(model_dir, tiny_data, completion: int = 6):
    """A generated batch of the model (2 rows, one image each): ids, mask, mm types, grids, pixel values."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pgpo.data.datasets import load_split
    from pgpo.data.prompts import chat_messages, user_text

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    records = load_split(tiny_data / "suite_count.jsonl")[:2]
    texts = [processor.apply_chat_template([chat_messages(user_text(r.question, r.choices or None), [None])],
                                           add_generation_prompt=True, tokenize=False)[0] for r in records]
    batch = processor(text=texts, images=[Image.open(r.image).convert("RGB") for r in records], return_tensors="pt",
                      padding=True, padding_side="left")
    torch.manual_seed(0)
    ids = model.generate(**batch, max_new_tokens=completion, min_new_tokens=completion, do_sample=True)
    mm = torch.zeros_like(ids)
    mm[:, :batch["input_ids"].shape[1]] = batch["mm_token_type_ids"]
    mask = torch.ones_like(ids)
    mask[:, :batch["input_ids"].shape[1]] = batch["attention_mask"]
    return model, ids, mask, mm, batch


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_dropping_the_visual_columns_equals_masking_them_in_each_family(family, tiny_dir, tiny_qwen3, tiny_data):
    from pgpo.models.blind_sequence import blind_hidden_states, blind_inputs, completion_hidden_states

    model, ids, mask, mm, batch = _rollout(tiny_dir if family == "qwen2_5_vl" else tiny_qwen3, tiny_data)
    grid, t = batch["image_grid_thw"], 6
    with torch.no_grad():
        dropped = blind_hidden_states(model, ids, mask, mm, grid, t, drop=True)
        masked = blind_hidden_states(model, ids, mask, mm, grid, t, drop=False)
        # masked, with the image fed: the vision features (and Qwen3-VL's DeepStack additions to its first language
        # layers) land at the visual positions, which no text token attends to
        inputs = blind_inputs(model, ids, mask, mm, grid, t, drop=False)
        inputs.pop("label_mask")
        fed = completion_hidden_states(model, t, **inputs, pixel_values=batch["pixel_values"], image_grid_thw=grid,
                                       mm_token_type_ids=mm)
        full = completion_hidden_states(model, t, input_ids=ids, attention_mask=mask, mm_token_type_ids=mm,
                                        pixel_values=batch["pixel_values"], image_grid_thw=grid)
    assert torch.allclose(dropped, masked, atol=1e-5), float((dropped - masked).abs().max())
    assert torch.allclose(fed, masked, atol=1e-5), float((fed - masked).abs().max())
    assert float((full - dropped).abs().max()) > 1e-2  # the image does reach the completion in the full pass


def test_the_context_budget_counts_the_family_s_visual_tokens(tiny_dir, tiny_qwen3):
    def longest(path):
        return longest_prompt_tokens(load_train_config(REPO / "workflows/config/train/tiny.yaml", {
            "model": {"path": str(path), "max_pixels": 1024 * 100}, "rollout": {"max_images": 2}}))

    text = load_train_config(REPO / "workflows/config/train/tiny.yaml").rollout.max_prompt_text_tokens
    assert longest(tiny_qwen3) == 2 * (100 + 2) + text  # 32 x 32 pixels per token
    assert longest(tiny_dir) == 2 * (1024 * 100 // 784 + 2) + text


def test_the_evaluation_prompt_bound_holds_for_qwen3_vl(tiny_qwen3, tiny_data):
    """The bound with the family's factor is at least the processor's own count, and within the template margin."""
    from prompt_rows import processed_prompts

    from pgpo.evaluation.prompt_budget import TEMPLATE_TOKENS, check_prompt_budget, image_tokens

    processor, rows = processed_prompts(tiny_qwen3, tiny_data)
    for record, doc, n in rows:
        pixels = {"min_pixels": 112 * 112, "max_pixels": 112 * 112}
        bound = check_prompt_budget("t", [doc], processor.tokenizer, pixels, 2048, 32, factor=32)
        assert n.shape[1] <= bound <= n.shape[1] + TEMPLATE_TOKENS, (n.shape[1], bound)
        pads = int((n == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
        size = Image.open(record.image).size
        assert image_tokens(size, 112 * 112, 112 * 112, factor=32) == pads + 2  # exact, with the 2 vision markers
        assert image_tokens(size, 112 * 112, 112 * 112) != pads + 2  # Qwen2.5-VL's 28 would miscount


@pytest.mark.slow
def test_pgpo_trains_a_tiny_qwen3_vl_and_lmms_eval_evaluates_it(tiny_qwen3, tiny_data, tmp_path):
    from training_runs import run, train_cmd

    out = tmp_path / "run"
    run(train_cmd(tiny_qwen3, tiny_data, out, "pgpo", steps=2))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["dependency/mean"] > 0 and rows[-1]["weights/sum_minus_length_absmax"] < 1e-3
    assert json.loads((out / "final" / "config.json").read_text())["model_type"] == "qwen3_vl"
    ev = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "pgpo.cli", "evaluate", "--checkpoint", str(out / "final"),
                           "--config", str(REPO / "workflows/config/eval/tiny.yaml"), "--data", str(tiny_data),
                           "--benchmarks", "tiny_count,tiny_colour", "--out", str(ev), "--set", "sampling.samples=2",
                           "--set", "limit=2"], capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for suite in ("tiny_count", "tiny_colour"):
        result = json.loads((ev / f"{suite}.json").read_text())
        assert (result["n_questions"], result["n_samples"], result["n_failed"]) == (2, 4, 0), result
        assert result["agrees_with_lmms_eval"]  # our scoring and lmms-eval's own on the same samples
        samples = [json.loads(line) for line in (ev / "samples" / f"{suite}.jsonl").read_text().splitlines()]
        assert len(samples) == 2 and all(len(s["responses"]) == 2 for s in samples)


def test_the_paper_dag_plans_qwen3_vl_2b_4b_8b_at_pinned_commits(tmp_path):
    from workflow_run import snakemake

    from pgpo.workflow import plan

    profile = REPO / "workflows/config/paper_qwen3_vl.yaml"
    cfg = plan.load_profile(profile)
    assert list(cfg["sizes"]) == ["2b", "4b", "8b"]  # the parent's 3b and 7b dropped
    for size, spec in cfg["sizes"].items():
        recipe = load_train_config(REPO / spec["train_config"])
        assert family_for(recipe.model.path).name == "qwen3_vl" and recipe.model.path.endswith(f"{size.upper()}-Instruct")
        assert recipe.model.revision == spec["revision"] and len(spec["revision"]) == 40
        # the paper's budget of 1,280 visual tokens per image, in Qwen3-VL's 32 x 32-pixel tokens
        assert longest_prompt_tokens(recipe) == 4 * (1280 + 2) + recipe.rollout.max_prompt_text_tokens
        # a snapshot path not on disk yet: the recipe's model.family still says 32 x 32-pixel tokens
        moved = load_train_config(REPO / spec["train_config"], {"model": {"path": "/scratch/not-yet/qwen3"}})
        assert longest_prompt_tokens(moved) == longest_prompt_tokens(recipe)
    dry = snakemake(tmp_path, "-n", "-p", "reproduce_table1", "--configfile", str(profile))
    jobs = dict(line.split()[:2] for line in dry.stdout.splitlines() if line.startswith(("train ", "evaluate ")))
    assert jobs == {"train": "18", "evaluate": "168"}  # 6 methods x 3 sizes; (3 bases + 18 runs) x 8 shards
    assert "--checkpoint Qwen/Qwen3-VL-4B-Instruct --revision ebb281ec70b05090aa6165b016eac8ec08e71b17" in dry.stdout
