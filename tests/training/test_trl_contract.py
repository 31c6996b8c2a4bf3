"""The TRL contract: the pin, every GRPOConfig field that shapes the objective set explicitly, and the private
touch points of pgpo/training/trl_bridge.py behaving as the bridge assumes (on a real trainer and real TRL steps)."""

import dataclasses
import inspect
import subprocess
import sys

import pytest
import torch

from pgpo.config.schema import REPO, available_methods, load_method, load_train_config


def test_another_trl_version_is_refused_naming_the_pin(monkeypatch):
    from pgpo.training.trl_bridge import ALLOW_ENV, TRL_PIN, check_trl_version

    assert __import__("trl").__version__ == TRL_PIN
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(ImportError, match=rf"pinned to trl=={TRL_PIN}.*trl==1\.17\.0 is installed"):
        check_trl_version("1.17.0")
    monkeypatch.setenv(ALLOW_ENV, "1")
    check_trl_version("1.17.0")  # the escape hatch, for running these contract tests against another TRL


def _grpo_specific_fields():
    from transformers import TrainingArguments
    from trl import GRPOConfig

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {f.name for f in dataclasses.fields(GRPOConfig)} - base


def test_every_grpo_config_field_is_classified():
    """A TRL upgrade that adds a field fails here until someone decides whether it changes the objective."""
    from pgpo.training.grpo_args import NOT_OBJECTIVE, OBJECTIVE_FIELDS

    assert not set(OBJECTIVE_FIELDS) & set(NOT_OBJECTIVE)
    unclassified = _grpo_specific_fields() - set(OBJECTIVE_FIELDS) - set(NOT_OBJECTIVE)
    assert not unclassified, f"classify in pgpo/training/grpo_args.py: {sorted(unclassified)}"


RECIPES = ["tiny", "paper_3b", "paper_7b"]
METHODS = available_methods()  # every Table 1 row, however many
# the real Qwen2.5-VL vocabulary's vision tokens (tests/fixtures/qwen; derived there in tests/models/test_vision_tokens.py)
QWEN_VISION = {"<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
               "<|image_pad|>": 151655, "<|video_pad|>": 151656}


@pytest.mark.parametrize("recipe", RECIPES)
def test_no_objective_field_is_left_to_trl_defaults(recipe):
    from trl import GRPOConfig

    from pgpo.training.grpo_args import OBJECTIVE_FIELDS, grpo_kwargs

    for name in METHODS:
        method = load_method(name)
        cfg = load_train_config(REPO / f"workflows/config/train/{recipe}.yaml", method=method)
        kwargs = grpo_kwargs(cfg, method, "/tmp/unused", vision_tokens=QWEN_VISION)
        missing = [f for f in OBJECTIVE_FIELDS if f not in kwargs]
        assert not missing, f"{recipe} x {name}: left to TRL's default: {missing}"
        args = GRPOConfig(**kwargs)
        for field in OBJECTIVE_FIELDS:  # and GRPOConfig keeps what we set (no silent re-derivation)
            if field not in ("generation_batch_size", "steps_per_generation", "vllm_importance_sampling_cap"):
                assert getattr(args, field) == kwargs[field], (recipe, name, field)


def test_the_paper_objective_is_easyr1s():
    """What the recipes say in comments, as values: no vLLM importance correction (mass conservation), dual clip
    3 on negative advantages, token-level ratio, one epoch per rollout, no reference model, pinned budgets."""
    from pgpo.training.grpo_args import grpo_kwargs

    method = load_method("pgpo")
    cfg = load_train_config(REPO / "workflows/config/train/paper_7b.yaml", method=method)
    k = grpo_kwargs(cfg, method, "/tmp/unused", vision_tokens=QWEN_VISION)
    assert k["vllm_importance_sampling_correction"] is False and k["delta"] == 3.0
    assert (k["epsilon"], k["epsilon_high"], k["beta"], k["num_iterations"]) == (0.2, 0.28, 0.0, 1)
    assert (k["importance_sampling_level"], k["loss_type"], k["mask_truncated_completions"]) == ("token", "dapo",
                                                                                                  False)
    assert (k["temperature"], k["top_p"], k["top_k"], k["num_generations"]) == (1.0, 0.99, 0, 5)
    assert k["reward_weights"] == [0.9, 0.1] and k["vllm_max_model_length"] == 9216
    assert (cfg.model.min_pixels, cfg.model.max_pixels) == (200704, 1003520)
    # no vision token is ever sampled (TRL #3847): vLLM's SamplingParams field, by token text
    assert k["generation_kwargs"] == {"bad_words": list(QWEN_VISION)}


def test_overridden_private_methods_still_have_the_signatures_the_bridge_assumes():
    from trl import GRPOTrainer

    expected = {
        "_generate_and_score_completions": ["self", "inputs"],
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "_compute_loss": ["self", "model", "inputs"],
        "_load_from_checkpoint": ["self", "resume_from_checkpoint", "model"],
        "_generate": ["self", "prompts"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters) == params, name
    logps = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters
    assert list(logps)[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    assert {"batch_size", "pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids"} <= set(logps)
    # the loss reads the advantages after its forward (before_loss may set token advantages from that forward)
    src = inspect.getsource(GRPOTrainer._compute_loss)
    assert src.index("_get_per_token_logps_and_entropies(") < src.index('inputs["advantages"]')
    assert src.count("_get_per_token_logps_and_entropies(") == 1
    # the rollout samples through _generate once, before any forward (screen_completions replaces tokens there)
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert src.count("self._generate(") == 1
    assert src.index("self._generate(") < src.index("_get_per_token_logps_and_entropies(")
    assert "return prompt_ids, completion_ids, " in inspect.getsource(GRPOTrainer._generate)
    # out["rewards"] (pgpo/training/trl_bridge.py _weighted_rewards): TRL's weighting and its process slice, as the bridge
    # restates them (tests/training/test_dynamic_sampling_steps.py compares the result with TRL's logged reward)
    assert src.count("self._calculate_rewards(") == 1
    assert "rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)" in src
    assert "rewards[unscorable_mask] = torch.nan" in src and "torch.isnan(rewards_per_func).all(dim=1)" in src
    assert "self.accelerator.process_index * len(prompts)," in src


def test_the_vllm_engine_receives_the_extra_arguments(monkeypatch):
    import trl.generation.vllm_generation as generation

    from pgpo.training.trl_bridge import vllm_engine_arguments

    src = inspect.getsource(generation.VLLMGeneration._init_vllm)
    assert "self.llm = LLM(" in src  # looked up in the module at call time: the patch below reaches it
    seen = []
    monkeypatch.setattr(generation, "LLM", lambda **kw: seen.append(kw), raising=False)
    original = generation.LLM
    with vllm_engine_arguments({"mm_processor_kwargs": {"max_pixels": 1003520}}):
        generation.LLM(model="m", max_model_len=9216)
    assert seen == [{"mm_processor_kwargs": {"max_pixels": 1003520}, "model": "m", "max_model_len": 9216}]
    assert generation.LLM is original


@pytest.fixture(scope="module")
def trainer(tiny_dir, tiny_data, tmp_path_factory):
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 4, "max_completion_length": 8},
           "micro_batch": 4, "max_steps": 1, "save_steps": 10}
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)
    t = build_trainer(cfg, load_method("dapo"), tmp_path_factory.mktemp("contract"))
    t.current_gradient_accumulation_steps = t.args.gradient_accumulation_steps  # set by train()
    return t


@pytest.mark.slow
def test_one_capture_per_micro_batch_and_advantages_read_after_it(trainer):
    """One loss forward per micro-batch, seen by before_loss before TRL reads the advantages: token advantages
    set there are the ones the loss uses; and update_tokens is exactly TRL's dapo normaliser."""
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    trainer.model.train()
    out = trainer.rollout(rows)
    seen = []
    trainer.before_loss = lambda logps, inputs: seen.append(logps.shape)
    from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

    micro = unsplit_pixel_values_by_grid(split_tensor_dict(split_pixel_values_by_grid(out), 2)[0])  # as TRL splits
    mask = micro["completion_mask"]
    micro["advantages"] = torch.ones(4)
    loss = trainer._compute_loss(trainer.model, micro)
    assert seen == [mask.shape]  # exactly one forward, of this micro-batch
    normaliser = trainer.update_tokens(micro, "train")
    # on-policy (ratio 1), advantage 1 everywhere: TRL's dapo loss is -(tokens of the micro-batch) / normaliser
    assert loss.item() == pytest.approx(-(mask.sum() / normaliser).item(), rel=1e-6)

    def zero_advantages(logps, inputs):
        inputs["advantages"] = torch.zeros_like(logps)

    trainer.before_loss = zero_advantages
    assert trainer._compute_loss(trainer.model, dict(micro)).item() == 0.0
    del trainer.before_loss


@pytest.mark.slow
def test_metrics_and_pad_id_touch_points(trainer):
    trainer.log_metric("train", "contract/probe", 2)
    assert trainer._metrics["train"]["contract/probe"] == [2.0]
    assert trainer.pad_token_id == trainer.processing_class.tokenizer.pad_token_id is not None


@pytest.mark.slow
def test_the_fused_lm_head_is_found_with_its_temperature(trainer):
    """The blind pass runs TRL's own fused head; the bridge finds it on the trainer's policy (through accelerate's
    wrappers) and reads the temperature baked into it."""
    from pgpo.training.trl_bridge import fused_head, fused_temperature

    fn = fused_head(trainer.model)
    assert fn is not None and fused_temperature(fn) == trainer.temperature
    from transformers import AutoModelForImageTextToText

    plain = AutoModelForImageTextToText.from_pretrained(trainer.model.name_or_path)
    assert fused_head(plain) is None  # a model TRL never touched: the backbone + ChunkedLogProbFunction path


def test_the_chunk_size_is_the_one_trls_fused_head_passes():
    """pgpo.training.trl_head copies TRL's private chunk size so the blind pass needs no import of trl.trainer."""
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    from pgpo.training.trl_head import CHUNK_SIZE

    assert CHUNK_SIZE == _CHUNKED_LOGPROB_CHUNK_SIZE


def test_measuring_a_checkpoint_imports_no_trainer():
    """The testbed's records and gates (pgpo.testbed.measure with a method's blind view) and evaluation import no
    part of trl.trainer: ~9 s and ~1,000 modules per job (a sixth of a record job). Fresh interpreter."""
    code = ("import sys, pgpo.testbed.records, pgpo.testbed.gates, pgpo.methods.components, pgpo.evaluation.lmms_model; "
            "print(sorted(m for m in sys.modules if m.startswith(('trl.trainer', 'pgpo.training.trl_bridge', 'pgpo.training.trainer'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_loss_forward_observer_lives_only_inside_compute_loss(trainer):
    """before_loss sees the loss forward only: a forward outside _compute_loss (policy_logprobs, TRL's old
    log-probs) reaches no hook, and no capture state outlives the call, even when TRL's loss raises."""
    from pgpo.training.trl_bridge import _LOSS_FORWARD

    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    trainer.model.train()
    out = trainer.rollout(rows)
    seen = []
    trainer.before_loss = lambda logps, inputs: seen.append(inputs)
    try:
        micro = {**out, "advantages": torch.ones(8)}
        trainer._compute_loss(trainer.model, micro)
        assert len(seen) == 1 and seen[0] is micro and _LOSS_FORWARD.get() is None
        trainer.policy_logprobs(out, 8)
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, out["completion_ids"].size(1),
                                                   batch_size=8, pixel_values=out["pixel_values"],
                                                   image_grid_thw=out["image_grid_thw"],
                                                   mm_token_type_ids=out["mm_token_type_ids"],
                                                   num_images=out.get("num_images"))
        assert len(seen) == 1  # forwards outside the loss are not the loss forward
        with pytest.raises(KeyError):
            trainer._compute_loss(trainer.model, {k: v for k, v in micro.items() if k != "completion_mask"})
        assert _LOSS_FORWARD.get() is None and not hasattr(trainer, "_captured")
    finally:
        del trainer.before_loss


class RecordingEngine:
    """Stands where vLLM's LLM sits in TRL's colocate path (vLLM is not installed here): records the requests TRL
    builds for it and answers each with a two-token completion."""

    def __init__(self):
        self.requests = []

    def generate(self, requests, sampling_params=None, use_tqdm=False):
        from types import SimpleNamespace as NS

        self.requests.extend(requests)
        token = NS(rank=1, logprob=-0.5)
        return [NS(prompt_token_ids=r["prompt_token_ids"], outputs=[NS(token_ids=[7, 8], logprobs=[{7: token},
                                                                                                    {8: token}])])
                for r in requests]


def colocated_generation(trainer, monkeypatch):
    """TRL's own VLLMGeneration in colocate mode, its engine replaced by a RecordingEngine (no vLLM needed: its
    generate() runs TRL's real request building up to the engine call)."""
    import trl.generation.vllm_generation as generation

    monkeypatch.setattr(generation, "SamplingParams", lambda **kw: kw, raising=False)
    gen = object.__new__(generation.VLLMGeneration)
    gen.__dict__.update(mode="colocate", processing_class=trainer.processing_class, model=trainer.model,
                        accelerator=trainer.accelerator, llm=RecordingEngine(),
                        repetition_penalty=1.0, temperature=1.0, top_p=1.0, top_k=0, min_p=0.0,
                        max_completion_length=2, logprobs=0, generation_kwargs={}, structured_outputs_regex=None,
                        tensor_parallel_size=1, enable_sleep_mode=False, _llm_weights_sleeping=False)
    return gen


def test_one_pad_per_image_collapses_runs_only():
    from pgpo.training.trl_bridge import one_pad_per_image

    assert one_pad_per_image([1, 9, 9, 9, 2, 3, 9, 9, 4, 9], 9) == [1, 9, 2, 3, 9, 4, 9]
    assert one_pad_per_image([9], 9) == [9] and one_pad_per_image([], 9) == [] and one_pad_per_image([1, 2], 9) == [1, 2]


@pytest.mark.slow
def test_colocated_vllm_receives_one_image_pad_per_image(trainer, monkeypatch):
    """TRL #6294: TRL 1.16 hands vLLM processor-expanded prompt ids (a run of N pads per image) and vLLM 0.31 expands
    the pads again. With the bridge, the engine receives TRL's ids with each run collapsed to one pad (exactly one
    per image, every other token equal and in order); the trainer keeps its expanded ids."""
    from trl.data_utils import prepare_multimodal_messages

    from pgpo.training.trl_bridge import send_one_pad_per_image

    rows = [trainer.train_dataset[i] for i in range(3)]
    # as TRL's _generate_and_score_completions hands the rows to its _tokenize_prompts
    prompts = [prepare_multimodal_messages(r["prompt"], images=r["images"]) for r in rows]
    prompt_ids, images, fields = trainer._tokenize_prompts(prompts)
    pad = trainer.processing_class.image_token_id
    merge = trainer.processing_class.image_processor.merge_size ** 2
    expanded = [int(g.prod()) // merge for g in fields["image_grid_thw"]]
    assert images is not None and all(len(i) == 1 for i in images)
    assert [ids.count(pad) for ids in prompt_ids] == expanded and min(expanded) > 1  # what TRL tokenizes

    unfixed = colocated_generation(trainer, monkeypatch)
    unfixed.generate(prompt_ids, images, 1)
    # TRL 1.16's behaviour (the bug): the engine gets the expanded ids; if this changes, TRL fixed it upstream
    assert [r["prompt_token_ids"] for r in unfixed.llm.requests] == prompt_ids

    fixed = colocated_generation(trainer, monkeypatch)
    assert send_one_pad_per_image(fixed)
    returned, completions, logprobs, _ = fixed.generate(prompt_ids, images, 1)
    sent = [r["prompt_token_ids"] for r in fixed.llm.requests]
    for ids, trl_ids, imgs in zip(sent, prompt_ids, images, strict=True):
        assert ids.count(pad) == len(imgs)
        assert [t for t in ids if t != pad] == [t for t in trl_ids if t != pad]
        assert ids.index(pad) == trl_ids.index(pad)  # the pad where the image's run began
    assert all(r["multi_modal_data"]["image"] is imgs[0] for r, imgs in zip(fixed.llm.requests, images))
    assert returned is prompt_ids and completions == [[7, 8]] * 3 and logprobs == [[[-0.5], [-0.5]]] * 3

    text_only = colocated_generation(trainer, monkeypatch)
    send_one_pad_per_image(text_only)
    text_only.generate([[1, pad, pad, 2]], None, 1)  # no images: nothing for vLLM to expand, ids left as TRL's
    assert text_only.llm.requests == [{"prompt_token_ids": [1, pad, pad, 2]}]
    server = colocated_generation(trainer, monkeypatch)
    server.mode = "server"  # the server's features are placed on the expanded runs: left alone
    assert not send_one_pad_per_image(server)


def test_the_bridge_installs_the_pad_fix_on_trls_vllm_generation():
    """The wrapper replaces the instance attribute GRPOTrainer calls (`self.vllm_generation.generate(prompts=...,
    images=..., num_generations=..., profiler=...)`) with the same parameter names."""
    from trl import GRPOTrainer
    from trl.generation.vllm_generation import VLLMGeneration

    from pgpo.training.trl_bridge import TRLBridge

    assert list(inspect.signature(VLLMGeneration.generate).parameters) == ["self", "prompts", "images",
                                                                           "num_generations", "profiler"]
    call = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "_, completion_ids, logprobs, _ = self.vllm_generation.generate(" in call  # prompt ids discarded
    assert "send_one_pad_per_image(self.vllm_generation)" in inspect.getsource(TRLBridge.__init__)


@pytest.mark.slow
def test_rewards_per_function_and_the_loss_forward_entropies_reach_their_hooks(trainer):
    """rollout_rewards receives TRL's [B, functions] rewards with reward_func_names as column names (in the order
    of the reward functions), once per rollout; after_loss receives the loss forward's [b,T] entropies, which are
    TRL's own (compute_entropy=True) for that micro-batch."""
    from pgpo.rewards.scoring import REWARD_FUNCS

    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    trainer.model.train()
    seen = []
    trainer.rollout_rewards = lambda rewards, names, mode: seen.append((rewards.clone(), names, mode))
    try:
        out = trainer.rollout(rows)
    finally:
        del trainer.rollout_rewards
    assert len(seen) == 1 and seen[0][1] == [f.__name__ for f in REWARD_FUNCS] and seen[0][2] == "train"
    assert seen[0][0].shape == (8, len(REWARD_FUNCS))
    weights = trainer.reward_weights.to(seen[0][0].device)
    assert torch.allclose((seen[0][0] * weights).nansum(1), out["rewards"], equal_nan=True)
    captured = []
    original = trainer.after_loss

    def after_loss(model, inputs, loss, logps, entropies=None):
        captured.append(entropies)
        return original(model, inputs, loss, logps, entropies)

    trainer.after_loss = after_loss
    try:
        trainer._compute_loss(trainer.model, {**out, "advantages": torch.ones(8)})
    finally:
        del trainer.after_loss
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad():
        _, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, out["completion_ids"].size(1), batch_size=8, compute_entropy=True,
            pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"],
            mm_token_type_ids=out["mm_token_type_ids"], num_images=out.get("num_images"))
    valid = out["completion_mask"].bool()
    assert len(captured) == 1 and captured[0].shape == valid.shape
    assert torch.allclose(captured[0][valid], entropies[valid], atol=1e-5) and entropies[valid].mean() > 0
