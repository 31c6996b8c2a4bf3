"""Every evaluation prompt measured against the model's context before the model loads (issue 23).

Training checks its prompt budget from the recipe (pgpo.config.schema.check_context_budget); evaluation reads
benchmark rows it did not write, and one question of 100,000 characters (25,665 tokens against the tiny model's
2,048) grew the pgpo_vlm backend to 17.8 GB until the kernel killed it, without naming the row. Here each
question's prompt is bounded from above: its user text and the system prompt through the tokenizer, the chat
template's markers, and per image the visual tokens of its size under the pixel budget (one token per factor x
factor pixels after resizing to multiples of the factor within [min_pixels, max_pixels], plus the two vision
markers; the factor is the model family's: 28 for Qwen2.5-VL, 32 for Qwen3-VL, pgpo.models.families).
A question whose bound plus max_new_tokens exceeds the context stops the evaluation with every such row named
and counted: the fix (exclude the row in the benchmark's source, raise max_model_len, lower the budget) is the
user's, never a silent skip.
"""

from __future__ import annotations

import math
from pathlib import Path

from pgpo.util.errors import DataError
from pgpo.util.jsonfile import read_json

TEMPLATE_TOKENS = 32  # the chat template's role markers around two turns (Qwen2.5-VL's: 14) and a margin
PATCH = 28  # Qwen2.5-VL's pixels per visual token side after the 2 x 2 merge (14-pixel patches): the default factor
VISION_MARKERS = 2
DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS = 56 * 56, 28 * 28 * 16384  # Qwen2.5-VL's processor defaults


def context_length(checkpoint: str, max_model_len: int = 0) -> int | None:
    """The model's context in tokens: its config's max_position_embeddings (text_config first), capped by the
    backend's max_model_len when set; None when the checkpoint has no readable config (a hub id not cached)."""
    from pgpo.util.jsonfile import adapter_base

    path = Path(adapter_base(checkpoint) or checkpoint) / "config.json"  # a LoRA adapter: its base's context
    limit = None
    if path.is_file():
        config = read_json(path, "the checkpoint's writer (`pgpo train` or `pgpo build-tiny`)", what="model config")
        limit = (config.get("text_config") or {}).get("max_position_embeddings") or config.get("max_position_embeddings")
    if max_model_len:
        limit = min(limit, max_model_len) if limit else max_model_len
    return limit


def _image_size(x) -> tuple[int, int] | None:
    """(width, height) of an image as a document holds it (PIL image, datasets' bytes dict, or path), header only."""
    from PIL import Image

    if isinstance(x, Image.Image):
        return x.size
    if isinstance(x, dict) and x.get("bytes"):
        import io

        with Image.open(io.BytesIO(x["bytes"])) as im:
            return im.size
    path = x.get("path") if isinstance(x, dict) else x
    if path is None:
        return None
    with Image.open(path) as im:
        return im.size


def resized_area(size: tuple[int, int], min_pixels: int, max_pixels: int, factor: int = PATCH) -> int:
    """Pixels of an image after the processor's resize (Qwen-VL's smart_resize, sides multiples of `factor`)."""
    w, h = size
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb * wb


def image_tokens(size: tuple[int, int] | None, min_pixels: int | None, max_pixels: int | None,
                 factor: int = PATCH) -> int:
    """One image's visual tokens (markers included); an unreadable size counts as max_pixels. Budgets left unset
    are the processor's defaults."""
    lo, hi = min_pixels or DEFAULT_MIN_PIXELS, max_pixels or DEFAULT_MAX_PIXELS
    area = hi if size is None else resized_area(size, lo, hi, factor)
    return area // (factor * factor) + VISION_MARKERS


def prompt_tokens(doc, tokenizer, pixels: dict, fixed: int, factor: int = PATCH) -> int:
    """Upper bound on one document's prompt tokens; `fixed` = system prompt and template tokens."""
    from pgpo.evaluation.docs import doc_to_text

    text = len(tokenizer(doc_to_text(doc), add_special_tokens=False)["input_ids"])
    images = sum(image_tokens(_image_size(x), pixels.get("min_pixels"), pixels.get("max_pixels"), factor)
                 for x in doc.get("images") or [])
    return fixed + text + images


def check_prompt_budget(name: str, docs, tokenizer, pixels: dict, context: int | None, max_new_tokens: int,
                        factor: int = PATCH) -> int:
    """Raise DataError naming every question whose prompt bound + max_new_tokens exceeds `context` (skipped when the
    context is unknown). `factor`: the model family's resize factor. Returns the longest prompt bound."""
    from pgpo.data.prompts import SYSTEM_PROMPT

    fixed = TEMPLATE_TOKENS + len(tokenizer(SYSTEM_PROMPT, add_special_tokens=False)["input_ids"])
    longest, over = 0, []
    for i, doc in enumerate(docs):
        n = prompt_tokens(doc, tokenizer, pixels, fixed, factor)
        longest = max(longest, n)
        if context and n + max_new_tokens > context:
            over.append(f"{doc.get('id', i)!r} ({n} tokens)")
    if over:
        raise DataError(f"{name}: {len(over)} question(s) do not fit the model's context of {context} tokens with "
                        f"max_new_tokens {max_new_tokens} (prompt bound: text, system prompt, template and visual "
                        f"tokens): {', '.join(over[:10])}{' ...' if len(over) > 10 else ''}; exclude them in the "
                        "benchmark's source, or raise backend.max_model_len (up to the model's own), or lower "
                        "sampling.max_new_tokens / max_pixels")
    return longest
