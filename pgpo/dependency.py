"""Token visual dependency (paper section 2): how much the image changes the policy's next-token distribution.

S_t = KL(pi(.|s_t, I) || pi(.|s_t)). The blind policy pi(.|s_t) is the SAME model over the SAME token sequence with
every visual token masked out of attention while each text token keeps the mRoPE position id it has in the full
sequence. Decision on the markers: <|vision_start|> and <|vision_end|> are masked with the image pads, so the blind
context is exactly the text-only prompt (an empty "image slot" would be a context the model never saw).
Shapes: B responses, T completion tokens, L = prompt + completion length, V vocabulary.
"""

from __future__ import annotations

import torch


def k3(logp_image: torch.Tensor, logp_blind: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One-sample KL estimate at the sampled token. [B,T] x3 -> [B,T].

    r = pi_blind(x_t) / pi_image(x_t); S = (r - 1) - log r >= 0 (Schulman's k3). Zero where mask is 0; the
    log-ratio is clamped so an extreme ratio gives a large finite value, never inf or NaN.
    """
    log_r = (logp_blind - logp_image).float().clamp(-30.0, 30.0)
    s = torch.expm1(log_r) - log_r
    s = torch.nan_to_num(s, nan=0.0, posinf=0.0).clamp_min(0.0)
    return s * mask.to(s.dtype)


def visual_span_mask(input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, vision_start_id: int,
                     vision_end_id: int, include_markers: bool = True) -> torch.Tensor:
    """True at visual tokens (image/video pads, and the vision markers if include_markers). [B,L] -> [B,L] bool."""
    visual = mm_token_type_ids != 0
    if include_markers:
        visual = visual | (input_ids == vision_start_id) | (input_ids == vision_end_id)
    return visual


def mrope_position_ids(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw) -> torch.Tensor:
    """3-D mRoPE position ids of the UNMASKED sequence (Qwen2.5-VL's own rule). -> [3,B,L]."""
    inner = getattr(model, "module", model)  # unwrap DDP/DeepSpeed engines for the rope helper
    base = inner.model if hasattr(inner.model, "get_rope_index") else inner
    position_ids, _ = base.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                          image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    return position_ids


def completion_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-prob of each completion token. logits [B,T,V] predicting completion_ids [B,T] -> [B,T] (fp32)."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def blind_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                  image_grid_thw: torch.Tensor, logits_to_keep: int, temperature: float = 1.0,
                  include_markers: bool = True, return_logits: bool = False):
    """Per-token log-probs of the last `logits_to_keep` tokens with the image masked out of attention.

    input_ids/attention_mask/mm_token_type_ids [B,L] (prompt + completion), image_grid_thw [n_images,3].
    Position ids come from the unmasked sequence and are passed explicitly: without them Qwen2.5-VL would
    re-derive positions from the masked attention mask and silently shift every text token. The vision tower
    does not run (no pixel_values): masked positions are never attended to, so their embeddings do not matter.
    Returns [B,T] log-probs (and [B,T,V] logits if return_logits).
    """
    cfg = getattr(model, "module", model).config
    position_ids = mrope_position_ids(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw)
    visual = visual_span_mask(input_ids, mm_token_type_ids, cfg.vision_start_token_id, cfg.vision_end_token_id,
                              include_markers)
    blind_mask = attention_mask * (~visual).to(attention_mask.dtype)
    out = model(input_ids=input_ids, attention_mask=blind_mask, position_ids=position_ids,
                logits_to_keep=logits_to_keep + 1, use_cache=False)
    logits = out.logits[:, :-1, :]  # logits at position i predict token i+1
    completion_ids = input_ids[:, -logits_to_keep:]
    logp = completion_logprobs(logits, completion_ids, temperature)
    return (logp, logits) if return_logits else logp


def full_kl(logits_image: torch.Tensor, logits_blind: torch.Tensor, mask: torch.Tensor, chunk: int = 1024,
            temperature: float = 1.0) -> torch.Tensor:
    """Exact KL(pi_image || pi_blind) over the whole vocabulary per token. [B,T,V] x2, [B,T] -> [B,T].

    Computed over chunks of `chunk` tokens so the fp32 softmax temporaries stay O(chunk x V). Zero on padding.
    """
    b, t, v = logits_image.shape
    flat_i, flat_b = logits_image.reshape(-1, v), logits_blind.reshape(-1, v)
    out = torch.empty(b * t, dtype=torch.float32, device=logits_image.device)
    for start in range(0, b * t, chunk):
        li = torch.log_softmax(flat_i[start:start + chunk].float() / temperature, dim=-1)
        lb = torch.log_softmax(flat_b[start:start + chunk].float() / temperature, dim=-1)
        out[start:start + chunk] = (li.exp() * (li - lb)).sum(-1).clamp_min(0.0)
    return out.view(b, t) * mask.to(torch.float32)
