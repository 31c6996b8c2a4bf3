"""Token visual dependency (paper section 2): how much the image changes the policy's next-token distribution.

S_t = KL(pi(.|s_t, I) || pi(.|s_t)). The blind policy pi(.|s_t) is the SAME model over the SAME text tokens with
every visual token hidden from attention while each text token keeps the mRoPE position id it has in the full
sequence. Decision on the markers: <|vision_start|> and <|vision_end|> are hidden with the image pads, so the blind
context is exactly the text-only prompt (an empty "image slot" would be a context the model never saw).

Memory: nothing here holds full-vocabulary logits [B,T,V] (25 GB at micro-batch 8, T = 2048, V = 151,936). The
blind log-probs go through TRL 1.16's own chunked LM head (the fused head the trainer installs, or, on a plain
model, the same ChunkedLogProbFunction on the backbone's hidden states), so both sides of k3 come from one code
path; the exact KL (`full_kl`) projects hidden states through the LM head a chunk of tokens at a time.
Shapes: B responses, T completion tokens, L = prompt + completion length, H hidden size, V vocabulary.
"""

from __future__ import annotations

import torch

from pgpo.trl_head import chunked_logprobs, fused_head, fused_temperature  # TRL's LM head, one code path


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
    """Log-prob of each completion token. logits [B,T,V] predicting completion_ids [B,T] -> [B,T] (fp32).

    Holds fp32 [B,T,V]: only for small batches (the probe); training paths use `chunked_logprobs`."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


# -- the blind sequence -------------------------------------------------------------------------------------------
def drop_columns(keep: torch.Tensor, values: torch.Tensor, pad) -> torch.Tensor:
    """Each row's kept columns, in order, right-aligned (left padding with `pad`) to the longest row.

    keep [B,L] bool; values [..., B, L] (leading dims such as mRoPE's 3 are carried along) -> [..., B, L'] with
    L' = max_b keep[b].sum(). Right alignment keeps the completion as the last T columns (TRL's layout)."""
    b, length = keep.shape
    n = keep.sum(dim=1)
    width = int(n.max()) if b else 0
    dest = (width - n).unsqueeze(1) + keep.long().cumsum(dim=1) - 1  # target column of every kept element
    rows = torch.arange(b, device=keep.device).unsqueeze(1).expand(b, length)
    out = values.new_full((*values.shape[:-2], b, width), pad)
    out[..., rows[keep], dest[keep]] = values[..., keep]
    return out


def blind_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                 image_grid_thw: torch.Tensor | None, logits_to_keep: int, include_markers: bool = True,
                 drop: bool = True) -> dict[str, torch.Tensor]:
    """Inputs of the blind pass: input_ids / attention_mask [B,L'], position_ids [3,B,L'], label_mask [B,L'].

    Position ids come from the unmasked sequence and are passed explicitly: without them Qwen2.5-VL would re-derive
    positions from the masked attention mask and silently shift every text token. With `drop`, the visual columns
    of the prompt are removed and the rows re-padded on the left, so the pass runs over text tokens only (exact:
    every text token keeps its position id and attends to the same text tokens in the same order; the saving is the
    projections/MLP over ~1,000 visual tokens per row, for any attention implementation, flash_attention_2 included,
    which would otherwise only skip the masked tokens inside attention). Without `drop`, the visual tokens stay in
    place with attention mask 0 (the paper's literal construction). A vision marker inside the completion (a model
    can emit one) is never dropped, so the completion stays the last T columns: it is masked out of attention, and
    its log-prob is still computed (label_mask is the ORIGINAL mask; attention_mask is the blind one).
    """
    cfg = getattr(model, "module", model).config
    position_ids = mrope_position_ids(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw)
    visual = visual_span_mask(input_ids, mm_token_type_ids, cfg.vision_start_token_id, cfg.vision_end_token_id,
                              include_markers)
    blind_mask = attention_mask * (~visual).to(attention_mask.dtype)
    if not drop:
        return {"input_ids": input_ids, "attention_mask": blind_mask, "position_ids": position_ids,
                "label_mask": attention_mask}
    keep = blind_mask.bool()
    keep[:, -logits_to_keep:] = True  # the completion block keeps its layout (padding and markers included)
    pad_id = getattr(cfg, "pad_token_id", None)
    pad_id = 0 if pad_id is None else pad_id  # padded columns are never attended to: any id does
    return {"input_ids": drop_columns(keep, input_ids, pad_id), "attention_mask": drop_columns(keep, blind_mask, 0),
            "position_ids": drop_columns(keep, position_ids, 0), "label_mask": drop_columns(keep, attention_mask, 0)}


def backbone(model):
    """The decoder body (embeddings + layers + final norm) that TRL's fused head runs: `base_model`."""
    inner = getattr(model, "module", model)
    return inner.base_model


def completion_hidden_states(model, logits_to_keep: int, **inputs) -> torch.Tensor:
    """Final hidden states at the positions that predict the last `logits_to_keep` tokens. -> [B,T,H].

    `inputs`: the backbone's inputs (input_ids, attention_mask, position_ids, pixel_values, ...)."""
    out = backbone(model)(**inputs, use_cache=False)
    return out.last_hidden_state[:, -logits_to_keep - 1:-1]


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


@torch.no_grad()
def blind_hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor | None, logits_to_keep: int,
                        include_markers: bool = True, drop: bool = True) -> torch.Tensor:
    """Final hidden states of the blind pass predicting the last `logits_to_keep` tokens. -> [B,T,H]."""
    blind = blind_inputs(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw, logits_to_keep,
                         include_markers, drop)
    blind.pop("label_mask")
    return completion_hidden_states(model, logits_to_keep, **blind)


@torch.no_grad()
def full_kl(hidden_image: torch.Tensor, hidden_blind: torch.Tensor, lm_head: torch.nn.Module, mask: torch.Tensor,
            temperature: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Exact KL(pi_image || pi_blind) over the whole vocabulary per token, from final hidden states.

    hidden_image/hidden_blind [B,T,H] (e.g. `completion_hidden_states` / `blind_hidden_states`), lm_head the
    output embeddings (weight [V,H]), mask [B,T] -> [B,T] fp32, 0 where mask is 0. Only the masked-in tokens are
    projected, `chunk` at a time, so the fp32 temporaries stay O(chunk x V) and [B,T,V] never exists.
    """
    valid = mask.bool()
    hi, hb = hidden_image[valid], hidden_blind[valid]  # [N,H]
    out = torch.zeros(hi.size(0), dtype=torch.float32, device=hi.device)
    for start in range(0, hi.size(0), chunk):
        li = torch.log_softmax(lm_head(hi[start:start + chunk]).float() / temperature, dim=-1)
        lb = torch.log_softmax(lm_head(hb[start:start + chunk]).float() / temperature, dim=-1)
        out[start:start + chunk] = (li.exp() * (li - lb)).sum(-1).clamp_min(0.0)
    return torch.zeros(mask.shape, dtype=torch.float32, device=hi.device).masked_scatter(valid, out)
