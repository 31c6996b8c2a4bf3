"""`sdpa` without grouped-query attention's key/value copies where no gradient is taken (issue 21, item 5).

transformers' sdpa path repeats every key/value head `num_attention_heads / num_key_value_heads` times
(`repeat_kv`: an expand and a copy) before torch's scaled_dot_product_attention whenever an attention mask is
given, which is always the case for a left-padded batch. torch (>= 2.5) does the same mapping inside the kernel
(`enable_gqa=True`, query head h reads key/value head h // groups, as repeat_kv lays them out). In the tiny
testbed's generation the copies took a quarter of the time (cProfile: repeat_kv + its reshape 1.3 s of 5.9 s).

Bit for bit: the forward is the same computation on the same numbers: sampled tokens and every step's scores of a
64-token generation of 128 testbed rollouts are bitwise equal with and without it (tests/models/test_attention.py checks
logits). The backward is not: the gradient of the repeated key/value heads is summed in another order (max
difference 1e-7 on the tiny model), so under gradient the wrapper calls transformers' own sdpa unchanged. Training
therefore ends in the same weights bit for bit: generation, the blind pass and evaluation take the fast path, the
loss forward/backward the original one.

`pgpo.training.run` and the evaluation backends load models with `resolve(config value)`: `sdpa` becomes `sdpa_gqa`
(registered here with transformers' public AttentionInterface and AttentionMaskInterface); other values pass
through. The name is not written to checkpoints (config.json holds no attention implementation)."""

from __future__ import annotations

import torch

SDPA_GQA = "sdpa_gqa"


def sdpa_gqa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs):
    """transformers' sdpa_attention_forward, with the grouped heads mapped inside the kernel when no gradient is
    taken. query [B, H, Tq, D], key/value [B, Hkv, Tk, D] -> ([B, Tq, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if (groups == 1 or torch.is_grad_enabled() or kwargs.get("position_bias") is not None
            or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = query.shape[2] > 1 and attention_mask is None and is_causal
    if is_causal and key.shape[2] > query.shape[2]:  # as transformers: prefill of an empty static cache
        key, value = key[:, :, :query.shape[2]], value[:, :, :query.shape[2]]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, is_causal=is_causal,
                                                           enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `sdpa_gqa` loadable (attn_implementation=...): its attention function and sdpa's mask builder."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SDPA_GQA, sdpa_gqa_forward)
    AttentionMaskInterface.register(SDPA_GQA, sdpa_mask)


def resolve(attn_implementation: str) -> str:
    """The implementation to load a model with: `sdpa` -> `sdpa_gqa` (registered now), anything else as given."""
    if attn_implementation != "sdpa":
        return attn_implementation
    register()
    return SDPA_GQA
