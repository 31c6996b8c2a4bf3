"""Blind views: how the image-blind log-probs of a rollout batch are obtained. One registered function per kind.

A blind view receives a BlindInputs (the rollout batch, the dataset rows it came from, and the trainer's forward
pass) plus its parameters, and returns ``(logps, stats)``: log-probs [B,T] of the sampled completion tokens under the
blind policy, computed without gradient, and statistics named relative to the ``blind`` namespace (the trainer logs
``blind/<name>``). Register one with ``@BLIND_VIEWS.register(name, params=Dataclass)`` (the contract:
pgpo.methods.registry.Registry.register). Kinds:
- attention_mask (PGPO): visual tokens masked out of attention, original mRoPE positions kept.
- patch_blackening (VPPO p=0.5 per response, PAPO p=0.6 per prompt): 14x14-pixel patches of the ORIGINAL image
  set to black, then the image goes through the processor again. The image keeps its size, so its grid and number
  of visual tokens are unchanged (checked). Processed pixel_values are never masked: Qwen's are 2-D rows of
  flattened, merged patches, and zeroing rows of them (a bug of a deleted TRL port) is not blackening pixels.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgpo.methods.registry import Registry
from pgpo.util.lazy import LazyModule, no_grad

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
else:  # imported at the first call: validating a method file needs none of them
    np, torch = LazyModule("numpy"), LazyModule("torch")
    Image = LazyModule("PIL.Image")

BLIND_VIEWS: Registry = Registry("blind view", stats_namespace="blind")


@dataclass(kw_only=True)
class BlindInputs:
    """What a blind view sees: one rollout batch of B completions (groups of G contiguous rows). Keywords only."""

    model: Any
    """The policy (possibly wrapped by DDP/DeepSpeed)."""
    batch: dict
    """TRL's rollout dict: prompt_ids, completion_ids, masks, pixel_values, image_grid_thw, ..."""
    rows: list[dict]
    """The dataset row of each completion (id, image(s), ...), len B."""
    group_size: int
    """G completions per prompt."""
    step: int
    """Optimizer step at generation time (seeds stochastic views)."""
    seed: int
    """The run's seed."""
    temperature: float
    """Sampling temperature (log-probs are of logits / temperature)."""
    micro_batch: int
    """Completions per forward pass."""
    forward: Callable[..., torch.Tensor]
    """forward(**overrides) -> [B,T] log-probs, no grad, batch inputs overridden."""
    blind_forward: Callable[..., torch.Tensor]
    """The framework's text-only pass (pgpo.training.blind_forward.blind_forward): blind_forward(model, input_ids,
    attention_mask, mm_token_type_ids, image_grid_thw, logits_to_keep, temperature) -> [B,T] log-probs, no grad,
    visual tokens hidden, original mRoPE positions. Passed in so that no method module imports trl."""
    image_processor: Any
    """The processor's image processor (same preprocessing as the rollout)."""


@BLIND_VIEWS.register("attention_mask")
@no_grad
def attention_mask_view(inputs: BlindInputs, params: None) -> tuple[torch.Tensor, dict[str, float]]:
    """PGPO: visual tokens (and vision markers) hidden from the text, original mRoPE positions kept.

    Per micro-batch (as TRL's own pass), through TRL's chunked LM head: no [B,T,V] logits. The visual columns are
    dropped from the sequence (exact, and ~1,000 fewer tokens per row at paper shapes); see
    pgpo.training.blind_forward."""
    batch = inputs.batch
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    mm, grids = batch["mm_token_type_ids"], batch["image_grid_thw"]
    per_sample = batch.get("num_images") or [1] * input_ids.size(0)
    logits_to_keep = batch["completion_ids"].size(1)
    out, image_start = [], 0
    for start in range(0, input_ids.size(0), inputs.micro_batch):
        stop = min(start + inputs.micro_batch, input_ids.size(0))
        n_img = sum(per_sample[start:stop])
        out.append(inputs.blind_forward(inputs.model, input_ids[start:stop], attention[start:stop], mm[start:stop],
                                        grids[image_start:image_start + n_img], logits_to_keep,
                                        inputs.temperature))
        image_start += n_img
    return torch.cat(out, dim=0), {}


@dataclass
class PatchBlackeningParams:
    """Random patch blackening of the original image (VPPO / PAPO)."""

    p: float = 0.5
    """Probability that a patch is blacked out (VPPO 0.5, PAPO 0.6)."""
    patch: int = 14
    """Patch side in pixels of the original image."""
    per: str = "response"
    """response: a fresh mask per completion (VPPO); prompt: one mask per prompt (PAPO)."""

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"patch_blackening: p must be in [0, 1], got {self.p}")
        if self.patch < 1:
            raise ValueError(f"patch_blackening: patch must be >= 1 pixel, got {self.patch}")
        if self.per not in ("response", "prompt"):
            raise ValueError(f"patch_blackening: per must be 'response' or 'prompt', got {self.per!r}")


def patch_mask(height: int, width: int, p: float, patch: int, seed: int) -> np.ndarray:
    """Which patches to black out: [ceil(H/patch), ceil(W/patch)] bool, each True with probability p."""
    rng = np.random.default_rng(seed)
    return rng.random((math.ceil(height / patch), math.ceil(width / patch))) < p


def blacken(image: np.ndarray, mask: np.ndarray, patch: int) -> np.ndarray:
    """Set the pixels of masked patches to 0. image [H,W,C], mask [ceil(H/patch), ceil(W/patch)] -> [H,W,C]."""
    h, w = image.shape[:2]
    pixels = np.repeat(np.repeat(mask, patch, axis=0), patch, axis=1)[:h, :w]  # edge patches are partial
    return np.where(pixels[..., None], np.zeros((), image.dtype), image)


def mask_seed(seed: int, prompt_id: str, step: int, response: int) -> int:
    """A mask's seed from (run seed, prompt id, step, response index): reproducible across runs and resumes."""
    return int(np.random.SeedSequence([seed, zlib.crc32(prompt_id.encode()), step, response]).generate_state(1)[0])


def row_images(row: dict, index: int) -> list[Image.Image]:
    """Every image of a dataset row (`images`: a list, in prompt order; or a single `image`): the order the
    processor laid their visual tokens out in, so the blackened images line up with the rollout's grids."""
    images = row.get("images") if "images" in row else [row.get("image")]
    if not images or any(im is None for im in images):
        raise ValueError(f"patch_blackening: rollout row {index} (id {row.get('id')!r}) has no image")
    return [im if isinstance(im, Image.Image) else Image.open(im) for im in images]


@BLIND_VIEWS.register("patch_blackening", params=PatchBlackeningParams)
@no_grad
def patch_blackening_view(inputs: BlindInputs,
                          params: PatchBlackeningParams) -> tuple[torch.Tensor, dict[str, float]]:
    """VPPO / PAPO: the same prompt and completion with each image's patches blacked out with probability p."""
    blackened, dropped, total = [], 0, 0
    for i, row in enumerate(inputs.rows):
        if "id" not in row:
            raise ValueError(f"patch_blackening: rollout row {i} has no 'id' field (masks are seeded by prompt id)")
        response = i % inputs.group_size if params.per == "response" else 0
        for j, image in enumerate(row_images(row, i)):
            pixels = np.asarray(image.convert("RGB"))
            seed = mask_seed(inputs.seed, f"{row['id']}#{j}", inputs.step, response)
            mask = patch_mask(pixels.shape[0], pixels.shape[1], params.p, params.patch, seed)
            blackened.append(Image.fromarray(blacken(pixels, mask, params.patch)))
            dropped, total = dropped + int(mask.sum()), total + mask.size
    processed = inputs.image_processor(images=blackened, return_tensors="pt")
    grid = inputs.batch["image_grid_thw"]
    if not torch.equal(processed["image_grid_thw"].to(grid.device), grid):
        raise RuntimeError("patch_blackening changed the image grid (number of visual tokens); the rollout images "
                           "and the images given to the blind view differ")
    pixel_values = inputs.batch["pixel_values"]
    logps = inputs.forward(pixel_values=processed["pixel_values"].to(pixel_values.device, pixel_values.dtype))
    return logps, {"blackened_fraction": dropped / max(total, 1)}
