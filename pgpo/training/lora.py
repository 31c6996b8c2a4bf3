"""LoRA training (issue 24): the adapter configuration TRL wraps the policy with, and the final model.

With `model.lora.rank > 0` TRL's GRPOTrainer wraps the policy with PEFT (`peft_config`); every pass of every method
(rollouts, the loss forward, the blind pass, the reference-free KL) goes through the wrapped model, so the
adapters are what the gradient reaches and nothing else moves. Checkpoints hold the adapter and its optimizer
state (resuming loads them back); final/ holds the merged full model, a plain Hugging Face checkpoint that
`pgpo evaluate`, vLLM and lmms-eval load like any other, and final/adapter/ the adapter alone (small, shareable).
An adapter-only directory (a checkpoint, or final/adapter) loads through pgpo.models.loading too: the base named
in its adapter_config.json, the adapter merged in.
"""

from __future__ import annotations

from pathlib import Path

from pgpo.config.schema import LoraConfig


def peft_config(lora: LoraConfig):
    """peft.LoraConfig for TRL, or None when LoRA is off (rank 0)."""
    if not lora.rank:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha or 2 * lora.rank, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, bias="none", task_type="CAUSAL_LM")


def save_final(trainer, final: Path, main: bool) -> None:
    """final/ of a run: the trained model (full fine-tuning), or with LoRA the merged model plus final/adapter/."""
    from accelerate.utils import is_peft_model

    if not is_peft_model(trainer.accelerator.unwrap_model(trainer.model)):
        trainer.save_model(str(final))  # every rank: ZeRO-3 gathers the shards; rank 0 writes
        return
    trainer.save_model(str(final / "adapter"))
    if main:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(final, safe_serialization=True)
