"""Run one RL training: a recipe (TrainConfig) x a method (MethodConfig) -> checkpoints + metrics.jsonl + run.json."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from pgpo.config import MethodConfig, TrainConfig
from pgpo.provenance import code_version, config_hash, dir_hash


def to_grpo_config(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path):
    """Translate recipe + method into TRL's GRPOConfig (batch sizes in TRL's per-device micro-step units)."""
    from trl import GRPOConfig

    r = cfg.rollout
    per_step_devices = cfg.micro_batch * cfg.num_processes
    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=r.update_prompts * r.num_generations // per_step_devices,
        steps_per_generation=r.prompts_per_step * r.num_generations // per_step_devices,
        num_generations=r.num_generations, temperature=r.temperature, top_p=r.top_p, top_k=0,
        max_completion_length=r.max_completion_length,
        loss_type=method.loss.type, epsilon=method.loss.epsilon_low, epsilon_high=method.loss.epsilon_high,
        beta=method.loss.kl_beta, scale_rewards=method.loss.scale_rewards,
        learning_rate=cfg.optim.lr, lr_scheduler_type=cfg.optim.scheduler, warmup_steps=cfg.optim.warmup_steps,
        weight_decay=cfg.optim.weight_decay, max_grad_norm=cfg.optim.max_grad_norm,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, num_train_epochs=cfg.epochs or 1.0,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        report_to="none", gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.model.dtype == "bfloat16" and cuda, use_cpu=not cuda,
        use_vllm=r.use_vllm, vllm_mode=r.vllm_mode, vllm_gpu_memory_utilization=r.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=r.vllm_tensor_parallel_size,
        reward_weights=[0.9, 0.1], remove_unused_columns=False, dataloader_num_workers=0,
        disable_tqdm=False, log_completions=False,
    )


def metrics_callback(path: Path):
    """A TrainerCallback appending every log dict (one per optimizer step) to `path` (JSON lines)."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero and "loss" in logs:
                with open(path, "a") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return MetricsFile()


def build_trainer(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path):
    """The PGPOTrainer of a recipe x method, with the model, processor and dataset loaded."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pgpo.data import load_split, to_trl_dataset
    from pgpo.scoring import REWARD_FUNCS
    from pgpo.trainer import PGPOTrainer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    processor = AutoProcessor.from_pretrained(cfg.model.path)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(
        cfg.model.path, dtype=getattr(torch, cfg.model.dtype), attn_implementation=cfg.model.attn_implementation)
    if cfg.model.freeze_vision:
        model.model.visual.requires_grad_(False)
    records = load_split(cfg.data.train)
    if cfg.data.max_samples:
        records = records[:cfg.data.max_samples]
    args = to_grpo_config(cfg, method, out)
    return PGPOTrainer(model=model, processing_class=processor, reward_funcs=list(REWARD_FUNCS), args=args,
                       train_dataset=to_trl_dataset(records), method=method,
                       callbacks=[metrics_callback(out / "metrics.jsonl")])


def train(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path) -> dict:
    """Train (resuming from the last checkpoint in output_dir if any) and write final/ and run.json."""
    from transformers.trainer_utils import get_last_checkpoint

    from pgpo.data import sha256_file

    out = Path(output_dir)
    version = code_version()  # at start: a commit made while training must not relabel this run
    trainer = build_trainer(cfg, method, out)
    processor = trainer.processing_class
    last = get_last_checkpoint(str(out)) if any(out.glob("checkpoint-*")) else None
    if last is None and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # a fresh start: drop metrics of an earlier, checkpoint-less attempt
    elif last is not None:
        _truncate_metrics(out / "metrics.jsonl", int(Path(last).name.split("-")[-1]))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - start
    trainer.save_model(str(out / "final"))
    processor.save_pretrained(out / "final")
    run = {
        "method": asdict(method), "uses_blind_view": method.needs_blind_view(), "config": asdict(cfg),
        "config_hash": config_hash({"m": asdict(method), "c": asdict(cfg)}),
        "code_version": version, "resumed_from": last, "wall_seconds": round(wall, 1),
        "global_steps": result.global_step, "inputs": {"train_split_sha256": sha256_file(cfg.data.train),
                                                       "model_hash": dir_hash(cfg.model.path)},
        "final_checkpoint_hash": dir_hash(out / "final"),
        "versions": {"torch": torch.__version__, "trl": __import__("trl").__version__,
                     "transformers": __import__("transformers").__version__},
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    return run


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, keep metrics up to the checkpoint's step so steps after it are not logged twice."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(f"{line}\n" for line in keep))
