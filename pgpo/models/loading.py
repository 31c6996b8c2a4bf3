"""The one way a checkpoint becomes a model here (training, evaluation, the warm starts, the probe, the testbed's
measurements, the blind check): AutoModelForImageTextToText in a named dtype, with the attention implementation and
the generation speed-up chosen by the caller, never by a copy of this call."""

from __future__ import annotations

from pathlib import Path

import torch


def hf_model(model):
    """The Hugging Face model inside the wrappers training puts around it: a DDP/DeepSpeed engine (`.module`) and
    PEFT (`get_base_model()`: the model with its LoRA layers injected, so a forward still goes through the
    adapters). Code that reaches into the model (the rope helper, the decoder body, the LM head, TRL's fused
    forward) goes through this, not `getattr(model, "module", model)`."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "peft_config") and hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def _merged_adapter(path: Path, adapter: Path, dtype, kwargs: dict):
    """The base model an adapter directory names (adapter_config.json's base_model_name_or_path), with the adapter
    merged into its weights: what evaluation and vLLM need (a plain model, no PEFT wrapper)."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from pgpo.util.jsonfile import adapter_base

    base = adapter_base(path)
    if Path(base).is_dir():
        from pgpo.util.integrity import check_model_dir

        check_model_dir(base, f"restore the base model the adapter {path} was trained on")
    elif base.startswith((".", "/", "~")):
        from pgpo.util.jsonfile import CorruptFile

        raise CorruptFile(f"{adapter}: base_model_name_or_path {base!r}: no such directory (the model the adapter "
                          "was trained on); restore it there, or point the field at a copy")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, **kwargs)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def load_model(path: str | Path, dtype: str = "float32", attn_implementation: str | None = None,
               fast_attention: bool = False, shared_prefill: bool = False, eval_mode: bool = False):
    """The model at `path` (a folder or a hub snapshot folder) in torch dtype `dtype` ("float32", "bfloat16", ...).

    attn_implementation: transformers' name (None: transformers' default); fast_attention: `sdpa` becomes the
    bitwise-identical sdpa_gqa (pgpo.models.attention.resolve); shared_prefill: one prefill per distinct prompt in
    generate (pgpo.models.shared_prefill, bitwise-identical rollouts); eval_mode: .eval() (no dropout)."""
    from transformers import AutoModelForImageTextToText

    if Path(path).is_dir():  # a cut weight file stops inside safetensors with no path: name it instead
        from pgpo.util.integrity import check_model_dir

        check_model_dir(path, "restore or copy it again (a folder the workflow wrote: delete it and rerun the rule "
                              "that writes it)")
    kwargs = {}
    if attn_implementation is not None:
        if fast_attention:
            from pgpo.models.attention import resolve

            attn_implementation = resolve(attn_implementation)
        kwargs["attn_implementation"] = attn_implementation
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file():  # a LoRA checkpoint (pgpo.training.lora): its base, with the adapter merged in
        model = _merged_adapter(Path(path), adapter, getattr(torch, dtype), kwargs)
    else:
        model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=getattr(torch, dtype), **kwargs)
    if shared_prefill:
        from pgpo.models.shared_prefill import install

        install(model)
    return model.eval() if eval_mode else model
