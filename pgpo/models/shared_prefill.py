"""One prefill per distinct prompt in a sampled generation (issue 21, item 5).

GRPO/DAPO sample G responses per prompt: TRL hands model.generate the prompt G times in a row, and Hugging Face's
generate prefills every copy (the vision tower encodes each image G times, the language model runs the whole
prompt G times). The copies' prefills are the same computation on the same numbers: on the testbed's batch
(16 prompts x 8) the per-row logits and key/value cache of 16 rows equal those of 128 rows bit for bit. So the
prefill runs once per run of identical consecutive rows and its outputs are copied to every row before decoding
starts; sampling and decoding are generate's own. The first step's logits are the output layer applied to every
row's copy of the hidden state, as generate computes them (the output layer's product over 12 rows and over 3
rounded differently on the tiny model, by 5e-7). Sequences and every step's scores are bitwise equal with and
without it (tests/models/test_shared_prefill.py; on the testbed's batch of 16 prompts x 8 also every score of 64 steps).

Touch points of transformers (5.17, generation internals, all here): `model._prefill(input_ids,
generation_config, model_kwargs, is_first_iteration)` (wrapped per model instance), the keys of `model_kwargs`
at prefill, `Cache.reorder_cache(index)` (public: expands the cache's batch), and Qwen2.5-VL's
`model.model.rope_deltas` (the per-row mRoPE offset generate keeps for decoding). Anything not recognised
(videos, inputs_embeds, a batch without repeated rows) takes generate's own prefill unchanged."""

from __future__ import annotations

import functools

import torch

_ROW_KEYS = ("attention_mask", "mm_token_type_ids", "token_type_ids")
_SKIP_KEYS = ("pixel_values_videos", "video_grid_thw", "inputs_embeds")


def image_spans(input_ids: torch.Tensor, image_token_id: int, grid_thw: torch.Tensor | None) -> list[list[int]]:
    """Per row, the indices (into grid_thw's rows, in order) of its images: one per run of image pad tokens."""
    pads = input_ids == image_token_id
    starts = pads & ~torch.nn.functional.pad(pads[:, :-1], (1, 0), value=False)
    counts = starts.sum(1).tolist()
    n = 0 if grid_thw is None else int(grid_thw.shape[0])
    if sum(counts) != n:
        raise ValueError(f"shared prefill: {sum(counts)} image pad runs in the batch, {n} image grids")
    out, first = [], 0
    for c in counts:
        out.append(list(range(first, first + c)))
        first += c
    return out


def repeated_rows(input_ids, attention_mask, pixel_values, grid_thw, image_token_id) -> torch.Tensor | None:
    """inverse [B]: for every row the index of its distinct row, when consecutive rows repeat (None if none do).
    Rows are the same when their tokens, mask, image grids and pixels are equal."""
    b = input_ids.shape[0]
    spans = image_spans(input_ids, image_token_id, grid_thw)
    offsets = [0]
    if grid_thw is not None:
        offsets += torch.cumsum(grid_thw.prod(-1), 0).tolist()

    def pixels(row):
        return [pixel_values[offsets[i]:offsets[i + 1]] for i in spans[row]]

    def same(r, s):
        if not torch.equal(input_ids[r], input_ids[s]):
            return False
        if attention_mask is not None and not torch.equal(attention_mask[r], attention_mask[s]):
            return False
        if len(spans[r]) != len(spans[s]):
            return False
        if spans[r] and not torch.equal(grid_thw[spans[r]], grid_thw[spans[s]]):
            return False
        return all(torch.equal(x, y) for x, y in zip(pixels(r), pixels(s)))

    inverse, firsts = [0], [0]
    for r in range(1, b):
        if same(firsts[-1], r):
            inverse.append(len(firsts) - 1)
        else:
            firsts.append(r)
            inverse.append(len(firsts) - 1)
    if len(firsts) == b:
        return None
    return torch.tensor(inverse, device=input_ids.device)


def _distinct_kwargs(model_kwargs: dict, firsts: list[int], b: int, spans, offsets) -> dict:
    out = dict(model_kwargs)
    rows = torch.tensor(firsts)
    for key in _ROW_KEYS:
        if isinstance(out.get(key), torch.Tensor) and out[key].shape[0] == b:
            out[key] = out[key][rows.to(out[key].device)]
    pos = out.get("position_ids")
    if isinstance(pos, torch.Tensor):  # [B, T] or [k, B, T] (mRoPE)
        out["position_ids"] = pos[rows.to(pos.device)] if pos.dim() == 2 else pos[:, rows.to(pos.device)]
    if out.get("pixel_values") is not None:
        images = [i for r in firsts for i in spans[r]]
        px = out["pixel_values"]
        out["pixel_values"] = torch.cat([px[offsets[i]:offsets[i + 1]] for i in images]) if images else px[:0]
        out["image_grid_thw"] = out["image_grid_thw"][torch.tensor(images, device=out["image_grid_thw"].device)]
    return out


def shared_prefill(prefill, model, input_ids, generation_config, model_kwargs, is_first_iteration=True):
    """generate's `_prefill` on the distinct rows only, its logits, cache and mRoPE offsets copied to every row."""
    cache = model_kwargs.get("past_key_values")
    image_token_id = getattr(model.config, "image_token_id", None)
    if (not is_first_iteration or input_ids.dim() != 2 or cache is None or cache.get_seq_length() != 0
            or image_token_id is None or any(model_kwargs.get(k) is not None for k in _SKIP_KEYS)
            or getattr(generation_config, "prefill_chunk_size", None) is not None):
        return prefill(input_ids, generation_config, model_kwargs, is_first_iteration=is_first_iteration)
    grid = model_kwargs.get("image_grid_thw")
    inverse = repeated_rows(input_ids, model_kwargs.get("attention_mask"), model_kwargs.get("pixel_values"), grid,
                            image_token_id)
    if inverse is None:
        return prefill(input_ids, generation_config, model_kwargs, is_first_iteration=is_first_iteration)
    b = input_ids.shape[0]
    firsts = [int(r) for r in torch.nonzero(torch.diff(inverse, prepend=inverse.new_tensor([-1]))).flatten()]
    spans = image_spans(input_ids, image_token_id, grid)
    offsets = [0] + (torch.cumsum(grid.prod(-1), 0).tolist() if grid is not None else [])
    distinct = _distinct_kwargs(model_kwargs, firsts, b, spans, offsets)
    head = model.get_output_embeddings()

    def every_row(module, args, output):
        # the first step's logits from every row's hidden state, as generate's own prefill computes them: the
        # output layer's matrix product over B rows and over U rows may round differently (seen: 12 vs 3 rows)
        hidden = args[0]
        return torch.nn.functional.linear(hidden.index_select(0, inverse.to(hidden.device)), module.weight,
                                          module.bias)

    handle = head.register_forward_hook(every_row)
    try:
        out = prefill(input_ids[torch.tensor(firsts, device=input_ids.device)], generation_config, distinct,
                      is_first_iteration=is_first_iteration)
    finally:
        handle.remove()
    if out.logits.shape[0] != b:
        raise RuntimeError(f"shared prefill: the output layer gave {out.logits.shape[0]} rows, {b} expected")
    cache.reorder_cache(inverse.to(cache.layers[0].keys.device) if hasattr(cache, "layers") else inverse)
    inner = getattr(model, "model", None)
    deltas = getattr(inner, "rope_deltas", None)
    if isinstance(deltas, torch.Tensor) and deltas.shape[0] == len(firsts):
        inner.rope_deltas = deltas.index_select(0, inverse.to(deltas.device))
    if getattr(out, "rope_deltas", None) is not None and out.rope_deltas.shape[0] == len(firsts):
        out.rope_deltas = out.rope_deltas.index_select(0, inverse.to(out.rope_deltas.device))
    return out


def install(model) -> None:
    """Wrap this model instance's `_prefill` (idempotent)."""
    if getattr(model, "_pgpo_shared_prefill", False):
        return
    prefill = model._prefill
    model._prefill = functools.partial(shared_prefill, prefill, model)
    model._pgpo_shared_prefill = True
