"""The analytic memory estimate (pgpo/models/memory_estimate.py) on hand-checked numbers, and its invariants.

The measured side (peak RSS of each pass at the real dimensions) is benchmarks/real_dimensions.py, not a test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgpo.models.memory_estimate import (
    ModelDims,
    Options,
    RolloutShape,
    decoder_layer_peak,
    estimate,
    lm_head_backward,
    lm_head_tile,
    saved_per_patch_block,
    saved_per_token_layer,
)

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen"
GIB = 2**30


@pytest.fixture(scope="module")
def dims_3b():
    return ModelDims.from_hf_config(json.loads((QWEN / "config_3b.json").read_text()))


@pytest.fixture(scope="module")
def dims_7b():
    return ModelDims.from_hf_config(json.loads((QWEN / "config.json").read_text()))


def test_parameter_counts_of_the_real_configs(dims_3b, dims_7b):
    # 3B by hand: text layer = q 2048*2048+2048 + k,v 2*(2048*256+256) + o 2048^2 + MLP 3*2048*11008 + norms 2*2048
    # = 77,076,992; x 36 + embedding 151,936*2048 (tied head) + final norm 2048 = 3,085,938,688. Vision block
    # (D 1280, I 3420, every linear with bias) = 19,702,200; x 32 + patch embed 1280*3*2*14*14 + merger
    # (1280 + 5120^2 + 5120 + 5120*2048 + 2048) = 668,684,288. The sum is what the real 3B model holds (counted
    # on a random-weight build of config_3b.json: 3,754,622,976); the 7B's is its published 8.29 B.
    assert dims_3b.text_layer_params() == 77_076_992
    assert dims_3b.text_params() == 3_085_938_688
    assert dims_3b.vision_block_params() == 19_702_200
    assert dims_3b.vision_params() == 668_684_288
    assert dims_3b.params() == 3_754_622_976
    assert dims_7b.params() == 8_292_166_656
    assert dims_3b.tied and not dims_7b.tied
    assert estimate(dims_3b, RolloutShape(1, 100, 1280, 2048))["weights"] == 2 * 3_754_622_976


def test_counts_match_transformers_on_any_dims():
    """The same count as the model transformers builds, for small dims, tied and untied (built on meta: free)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    for tied in (True, False):
        text = {"vocab_size": 1000, "hidden_size": 96, "intermediate_size": 200, "num_hidden_layers": 3,
                "num_attention_heads": 6, "num_key_value_heads": 2, "tie_word_embeddings": tied,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}}
        vision = {"depth": 2, "hidden_size": 64, "num_heads": 4, "intermediate_size": 120, "out_hidden_size": 96,
                  "fullatt_block_indexes": [1]}
        raw = {"text_config": text, "vision_config": vision, "tie_word_embeddings": tied}
        with torch.device("meta"):
            model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**raw))
        assert ModelDims.from_hf_config(raw).params() == sum(p.numel() for p in model.parameters())


def test_flat_first_release_and_nested_configs_read_the_same(dims_3b):
    raw = json.loads((QWEN / "config_3b.json").read_text())
    text_keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads")
    nested = {"vision_config": raw["vision_config"], "tie_word_embeddings": True,
              "text_config": {k: raw[k] for k in text_keys}}
    assert ModelDims.from_hf_config(nested) == dims_3b


def test_sequence_lengths():
    s = RolloutShape(rows=2, prompt_text_tokens=151, visual_tokens=1280, completion_tokens=2048)
    assert s.seq_len == 151 + 1280 + 2 + 2048 == 3481  # the image with its 2 vision markers
    assert s.blind_len == 151 + 2048
    assert RolloutShape(1, 100, 1280, 10, images=2).seq_len == 100 + 2 * 1282 + 10


def test_lm_head_tile_by_hand():
    # [4096 tokens, 32768 vocab] tile in bf16 (2 B) + 3 fp32 copies on TRL's torch fallback (12 B)
    assert lm_head_tile(10_000, Options(lm_head_kernel="torch")) == 4096 * 32768 * 14 == 1_879_048_192
    assert lm_head_tile(10_000, Options(lm_head_kernel="triton")) == 4096 * 32768 * 2
    assert lm_head_tile(100, Options(lm_head_kernel="triton")) == 100 * 32768 * 2  # fewer tokens than a chunk


def test_lm_head_backward_by_hand(dims_3b):
    # fp32 accumulators of the weight gradient [151936, 2048] and the hidden gradient [5000, 2048], and the larger
    # of: the bf16 tile [4096, 32768] + 7 fp32 copies + a bool one (torch fallback) + fp32 upcasts of a weight and a
    # token chunk, or the bf16 casts of both gradients at the return (Triton: the tile is only 256 MiB)
    v, h = 151936, 2048
    expected = (v + 5000) * h * 4 + 4096 * 32768 * (2 + 29) + (32768 + 4096) * h * 4
    assert lm_head_backward(dims_3b, 5000, Options(lm_head_kernel="torch")) == expected
    assert lm_head_backward(dims_3b, 5000, Options()) == (v + 5000) * h * 4 + (v + 5000) * h * 2


def test_per_token_layer_counts_by_hand(dims_3b):
    # saved for backward: 2 norms x (fp32 input 8192 + bf16 output 4096) + (q 2048 + k,v 2*256 + out 2048) * 2
    # + 4 * 11008 * 2 = 24,576 + 9,216 + 88,064
    assert saved_per_token_layer(dims_3b, Options()) == 121_856
    # a vision block per patch: norms 2 * (1280 * 4 + 1280 * 2) + the qkv output 3 * 1280 * 2 (v is a view of it)
    # + rotated q, k 2 * 1280 * 2 + output 1280 * 2 + MLP 4 * 3420 * 2 = 15,360 + 7,680 + 5,120 + 2,560 + 27,360
    assert saved_per_patch_block(dims_3b, Options()) == 58_080
    # no grad, one token: MLP phase 2048*2 + 3*11008*2 = 70,144 > attention phase 30,208
    assert decoder_layer_peak(dims_3b, 1, 1, 1, Options()) == 70_144


def test_forward_peaks_do_not_grow_with_depth_and_gradients_do(dims_3b):
    s = RolloutShape(rows=2, prompt_text_tokens=151, visual_tokens=1280, completion_tokens=2048)
    # the benchmark's setting (CPU: sdpa, TRL's torch fallback), where the LM head's backward phase is the peak
    shallow, deep = (estimate(dims_3b.truncated(n, n), s, attention="sdpa", lm_head_kernel="torch") for n in (2, 3))
    for name in ("vision", "image_forward", "blind", "shaping"):
        assert shallow[name] == deep[name], name
    tokens, patches = 2 * s.seq_len, 2 * 1280 * 4
    b = 2
    layer = tokens * saved_per_token_layer(dims_3b, Options())
    assert deep["loss"] - shallow["loss"] >= layer  # + a vision block's saved activations
    # with checkpointing a layer costs only its input (tokens x H) and a vision block its input (patches x D)
    assert deep["loss_gc"] - shallow["loss_gc"] == tokens * dims_3b.hidden * b + patches * dims_3b.vision_hidden * b
    assert deep["loss_gc"] < deep["loss"]


def test_the_blind_pass_is_cheaper_than_the_image_pass(dims_3b, dims_7b):
    for dims in (dims_3b, dims_7b):
        for kernel in ("torch", "triton"):
            e = estimate(dims, RolloutShape(8, 200, 1280, 2048), lm_head_kernel=kernel)
            assert e["blind"] < e["image_forward"]
            assert e["shaping"] < 2**20


def test_paper_micro_batch_fits_an_80gb_gpu_only_with_checkpointing(dims_7b):
    """The paper trains the 7B with gradient checkpointing at micro-batch 8 (activations; ZeRO-3 shards the
    weights, gradients and optimizer over 8 GPUs): without checkpointing the activations alone exceed 80 GB."""
    e = estimate(dims_7b, RolloutShape(8, 200, 1280, 2048))
    assert e["loss"] > 80 * GIB
    assert e["loss_gc"] - dims_7b.params() * 2 < 80 * GIB


def test_attention_implementations_by_hand(dims_3b):
    """sdpa adds only its bool padding mask (rows x L x L bytes; torch's CPU kernel holds no scores, measured);
    eager adds a bf16 mask and, inside a layer, the scores [rows, heads, L, L] x (2 + 4 + 2) bytes."""
    s = RolloutShape(rows=2, prompt_text_tokens=151, visual_tokens=1280, completion_tokens=2048)
    flash, sdpa, eager = (estimate(dims_3b, s, attention=a) for a in ("flash_attention_2", "sdpa", "eager"))
    assert sdpa["image_forward"] - flash["image_forward"] == 2 * 3481 * 3481
    assert sdpa["blind"] - flash["blind"] == 2 * 2199 * 2199
    scores = 2 * 16 * 3481 * 3481 * 8
    assert eager["image_forward"] > scores > sdpa["image_forward"]  # the scores dominate a 3.5k-token row
    with pytest.raises(ValueError, match="attention must be"):
        estimate(dims_3b, s, attention="flash")
