"""The one way a checkpoint becomes a model here (training, evaluation, the warm starts, the probe, the testbed's
measurements, the blind check): AutoModelForImageTextToText in a named dtype, with the attention implementation and
the generation speed-up chosen by the caller, never by a copy of this call."""

from __future__ import annotations

from pathlib import Path

import torch


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
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=getattr(torch, dtype), **kwargs)
    if shared_prefill:
        from pgpo.models.shared_prefill import install

        install(model)
    return model.eval() if eval_mode else model
