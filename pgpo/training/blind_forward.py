"""The blind pass through TRL's chunked LM head: per-token log-probs of a completion without the image.

Memory: nothing here holds full-vocabulary logits [B,T,V] (25 GB at micro-batch 8, T = 2048, V = 151,936). The
blind log-probs go through TRL 1.16's own chunked LM head (the fused head the trainer installs, or, on a plain
model, the same ChunkedLogProbFunction on the backbone's hidden states), so both sides of k3 come from one code
path. The framework hands this function to the blind views (pgpo.methods.blind.BlindInputs.text_only_forward).
"""

from __future__ import annotations

import torch

from pgpo.models.blind_sequence import blind_inputs, completion_hidden_states
from pgpo.training.trl_head import chunked_logprobs, fused_head, fused_temperature  # TRL's LM head, one code path


@torch.no_grad()
def blind_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                  image_grid_thw: torch.Tensor | None, logits_to_keep: int, temperature: float = 1.0,
                  include_markers: bool = True, drop: bool = True) -> torch.Tensor:
    """Per-token log-probs of the last `logits_to_keep` tokens without the image. -> [B,T] fp32, 0 on padding.

    input_ids/attention_mask/mm_token_type_ids [B,L] (prompt + completion), image_grid_thw [n_images,3].
    The vision tower does not run (no pixel_values): hidden or dropped visual tokens are never attended to.
    On a model with TRL's fused LM head (the trainer's policy) the pass IS TRL's forward (accelerate's autocast,
    the head's fp32 cast and temperature included), with the blind inputs; on a plain model, the backbone then
    the same ChunkedLogProbFunction. Neither materialises [B,T,V].
    """
    blind = blind_inputs(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw, logits_to_keep,
                         include_markers, drop)
    ids, label_mask = blind["input_ids"], blind.pop("label_mask")
    fused = fused_head(model)
    if fused is not None:
        baked = fused_temperature(fused)
        if baked is not None and abs(baked - temperature) > 1e-12:
            raise ValueError(f"blind_forward: temperature {temperature} differs from the {baked} of the model's "
                             "fused LM head (the image-conditioned log-probs use the head's)")
        labels = ids.masked_fill(label_mask == 0, -100)  # TRL's own label rule: only completion tokens scored
        labels[:, :-logits_to_keep] = -100
        return model(**blind, labels=labels, fused_lm_head=True).log_probs[:, -logits_to_keep:].float()
    hidden = completion_hidden_states(model, logits_to_keep, **blind)
    return chunked_logprobs(model, hidden, ids[:, -logits_to_keep:], label_mask[:, -logits_to_keep:], temperature)
