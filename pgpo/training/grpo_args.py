"""Recipe + method -> TRL's GRPOConfig, with every field that shapes the objective set explicitly.

TRL's defaults move between releases and some change the loss without a word (TRL 1.16 multiplies each
response's loss by a vLLM importance ratio by default). So every GRPOConfig field that affects the loss, the
advantages or the sampling is listed in OBJECTIVE_FIELDS and set here from the recipe / method YAML or fixed with
the reason beside it; every other GRPO-specific field is listed in NOT_OBJECTIVE. tests/training/test_trl_contract.py fails
if a field of the installed GRPOConfig is in neither list (a TRL upgrade added one: classify it) or if an objective
field is left to TRL's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from pgpo.config.schema import MethodConfig, TrainConfig
from pgpo.models.vision_tokens import sampling_kwargs
from pgpo.rewards.registry import resolve

OBJECTIVE_FIELDS = (
    # loss
    "loss_type", "epsilon", "epsilon_high", "delta", "beta", "num_iterations", "importance_sampling_level",
    "mask_truncated_completions", "vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
    "vllm_importance_sampling_clip_max", "vllm_importance_sampling_clip_min", "vllm_importance_sampling_cap",
    "off_policy_mask_threshold", "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy",
    "use_bias_correction_kl", "cast_lm_head_to_fp32", "disable_dropout", "router_aux_loss_coef",
    "sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
    "vespo_lambda_neg", "sync_ref_model",
    # advantages
    "num_generations", "scale_rewards", "reward_weights", "multi_objective_aggregation",
    # sampling and batching
    "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "generation_kwargs", "max_completion_length",
    "vllm_max_model_length", "steps_per_generation", "generation_batch_size", "shuffle_dataset",
    "chat_template_kwargs", "num_generations_eval",
    # optimizer (TrainingArguments fields that change the update)
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim", "adam_beta1",
    "adam_beta2", "adam_epsilon", "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "data_seed",
)

NOT_OBJECTIVE = (  # GRPO-specific fields that do not change what is optimised (engine placement, logging, I/O)
    "model_init_kwargs", "trust_remote_code", "ds3_gather_for_generation", "pad_to_multiple_of",
    "cache_implementation", "use_vllm", "vllm_mode", "vllm_model_impl", "vllm_enable_sleep_mode",
    "vllm_structured_outputs_regex", "vllm_server_base_url", "vllm_server_host", "vllm_server_port",
    "vllm_server_timeout", "vllm_group_port", "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size",
    "ref_model_mixup_alpha", "ref_model_sync_steps", "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta",
    "entropy_target", "max_tool_calling_iterations", "log_completions", "log_multimodal",
    "num_completions_to_print", "log_unique_prompts", "log_completions_hub_repo",
    "use_transformers_continuous_batching", "transformers_continuous_batching_config", "use_transformers_paged",
)


def grpo_kwargs(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path, *,
                vision_tokens: Mapping[str, int]) -> dict:
    """GRPOConfig keyword arguments (batch sizes in TRL's per-device micro-step units). `vision_tokens`: the
    checkpoint tokenizer's vision special tokens (pgpo.models.vision_tokens.vision_tokens), never sampled by either
    engine."""
    r, o, loss = cfg.rollout, cfg.optim, method.loss
    per_step_devices = cfg.micro_batch * cfg.num_processes
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=r.update_prompts * r.num_generations // per_step_devices,
        steps_per_generation=r.prompts_per_step * r.num_generations // per_step_devices,
        generation_batch_size=None,  # derived by TRL from steps_per_generation
        num_generations=r.num_generations, num_generations_eval=r.num_generations,
        temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, min_p=r.min_p or None,
        repetition_penalty=r.repetition_penalty, chat_template_kwargs=None,
        # vision special tokens get probability 0 (TRL #3847): engine-specific keys (pgpo/models/vision_tokens.py)
        generation_kwargs=sampling_kwargs(vision_tokens, use_vllm=r.use_vllm),
        max_completion_length=r.max_completion_length, vllm_max_model_length=r.max_model_len or None,
        shuffle_dataset=True,
        # -- the loss --
        loss_type=loss.type, epsilon=loss.epsilon_low, epsilon_high=loss.epsilon_high,
        delta=loss.dual_clip or None, beta=loss.kl_beta, scale_rewards=loss.scale_rewards,
        importance_sampling_level=loss.importance_sampling_level, mask_truncated_completions=loss.mask_truncated,
        vllm_importance_sampling_correction=loss.vllm_is_correction,
        vllm_importance_sampling_mode="sequence_mask", vllm_importance_sampling_clip_max=3.0,
        vllm_importance_sampling_clip_min=None, vllm_importance_sampling_cap=None,  # used only if correction is on
        num_iterations=1,  # one update per rollout sample (EasyR1 ppo_epochs 1); S is from the rollout policy
        off_policy_mask_threshold=None, top_entropy_quantile=1.0,  # no token masking beyond the method's shaper
        entropy_coef=0.0, use_adaptive_entropy=False,  # entropy terms are pgpo loss terms (pgpo.methods.loss_terms)
        use_bias_correction_kl=True, sync_ref_model=False,  # only with a reference model (kl_beta > 0)
        cast_lm_head_to_fp32=cfg.model.lm_head_fp32,
        disable_dropout=True,  # Qwen2.5-VL has none; a model with dropout would make the two passes of S differ
        router_aux_loss_coef=None,  # dense models: no MoE router loss
        sapo_temperature_neg=1.05, sapo_temperature_pos=1.0, vespo_k_pos=2.0, vespo_lambda_pos=3.0,
        vespo_k_neg=3.0, vespo_lambda_neg=2.0,  # TRL's values; read only by the sapo / vespo loss types
        reward_weights=[s.weight for s in resolve(cfg.rewards, "recipe")],  # pgpo.rewards.registry, in order
        multi_objective_aggregation="sum_then_normalize",
        # -- optimizer --
        learning_rate=o.lr, lr_scheduler_type=o.scheduler, warmup_steps=o.warmup_steps,
        weight_decay=o.weight_decay, max_grad_norm=o.max_grad_norm, optim=o.optimizer, adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2, adam_epsilon=o.adam_epsilon,
        # -- schedule, I/O, engines --
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, num_train_epochs=cfg.epochs or 1.0,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        save_only_model=cfg.save_model_only,
        report_to=list(cfg.report_to) or "none", gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.model.dtype == "bfloat16" and cuda, use_cpu=not cuda,
        use_vllm=r.use_vllm, vllm_mode=r.vllm_mode, vllm_gpu_memory_utilization=r.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=r.vllm_tensor_parallel_size, vllm_server_host=r.vllm_server_host,
        vllm_enable_sleep_mode=r.vllm_sleep_mode,
        vllm_server_port=r.vllm_server_port,
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False, log_completions=False,
    )


def to_grpo_config(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path, *,
                   vision_tokens: Mapping[str, int]):
    """The GRPOConfig of a recipe x method (`vision_tokens`: see grpo_kwargs)."""
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(cfg, method, output_dir, vision_tokens=vision_tokens))
