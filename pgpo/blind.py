"""Blind views: how the image-blind log-probs of a rollout batch are obtained. One registered function per kind.

A blind view receives the trainer's model and the rollout batch (TRL's output dict of
``_generate_and_score_completions``) and returns log-probs [B,T] of the sampled completion tokens under the blind
policy, computed without gradient.
"""

from __future__ import annotations

import torch

from pgpo.dependency import blind_forward
from pgpo.registry import Registry

BLIND_VIEWS: Registry = Registry("blind view")


@BLIND_VIEWS.register("attention_mask")
@torch.no_grad()
def attention_mask_view(model, batch: dict, temperature: float, micro_batch: int) -> torch.Tensor:
    """PGPO: visual tokens (and vision markers) masked out of attention, original mRoPE positions kept."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    mm = batch["mm_token_type_ids"]
    grids = batch["image_grid_thw"]
    per_sample = batch.get("num_images") or [1] * input_ids.size(0)
    logits_to_keep = batch["completion_ids"].size(1)
    out, image_start = [], 0
    for start in range(0, input_ids.size(0), micro_batch):
        stop = min(start + micro_batch, input_ids.size(0))
        n_img = sum(per_sample[start:stop])
        out.append(blind_forward(model, input_ids[start:stop], attention[start:stop], mm[start:stop],
                                 grids[image_start:image_start + n_img], logits_to_keep, temperature))
        image_start += n_img
    return torch.cat(out, dim=0)
