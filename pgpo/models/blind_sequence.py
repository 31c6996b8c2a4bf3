"""The blind sequence: the model inputs of the image-blind pass, and the backbone's hidden states over them.

Every visual token (and, by default, the vision markers) is hidden from attention while each text token keeps the
mRoPE position id it has in the full sequence; with `drop`, the hidden columns are removed (exact). No trl here: the
pass through TRL's LM head is pgpo.training.blind_forward. Shapes: B rows, L = prompt + completion length, T kept
completion tokens, H hidden size.
"""

from __future__ import annotations

import torch

from pgpo.methods.dependency import visual_span_mask
from pgpo.models.loading import hf_model


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


def mrope_position_ids(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw) -> torch.Tensor:
    """3-D mRoPE position ids of the UNMASKED sequence (Qwen2.5-VL's own rule). -> [3,B,L]."""
    inner = hf_model(model)  # unwrap DDP/DeepSpeed engines and PEFT for the rope helper
    base = inner.model if hasattr(inner.model, "get_rope_index") else inner
    position_ids, _ = base.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                          image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    return position_ids


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
    cfg = hf_model(model).config
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
    return hf_model(model).base_model


def completion_hidden_states(model, logits_to_keep: int, **inputs) -> torch.Tensor:
    """Final hidden states at the positions that predict the last `logits_to_keep` tokens. -> [B,T,H].

    `inputs`: the backbone's inputs (input_ids, attention_mask, position_ids, pixel_values, ...)."""
    out = backbone(model)(**inputs, use_cache=False)
    return out.last_hidden_state[:, -logits_to_keep - 1:-1]


@torch.no_grad()
def blind_hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor | None, logits_to_keep: int,
                        include_markers: bool = True, drop: bool = True) -> torch.Tensor:
    """Final hidden states of the blind pass predicting the last `logits_to_keep` tokens. -> [B,T,H]."""
    blind = blind_inputs(model, input_ids, attention_mask, mm_token_type_ids, image_grid_thw, logits_to_keep,
                         include_markers, drop)
    blind.pop("label_mask")
    return completion_hidden_states(model, logits_to_keep, **blind)
