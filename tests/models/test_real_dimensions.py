"""Shape-faithful checks of what only the real dimensions exercise (fast: meta-device models, small tensors).

The paper's pixel budget through the real processor (1,280 visual tokens from a 1120x896 image), mRoPE positions
of that grid in the image and the blind pass, the vision tower's window attention on grids that do not divide
into windows, and TRL's chunked LM head at the real vocabulary in bf16 (its last tile is partial). The memory
and the full-size passes: benchmarks/real_dimensions.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pgpo.models.blind_sequence import blind_inputs, mrope_position_ids

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen"
PAPER_PIXELS = {"min_pixels": 200704, "max_pixels": 1003520}  # workflows/config/train/paper_3b.yaml


@pytest.fixture(scope="module")
def meta_3b():
    """The real 3B config (1 text layer) on the meta device: no weights, but the real config and rope rules."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig.from_pretrained(QWEN / "config_3b.json")
    cfg.text_config.num_hidden_layers = 1
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration(cfg)


@pytest.fixture(scope="module")
def paper_prompt():
    from pgpo.models.processor import load_processor

    processor = load_processor(QWEN, **PAPER_PIXELS)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (896, 1120, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is x?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor, processor(text=[text], images=[image], return_tensors="pt")


def test_the_paper_budget_gives_1280_visual_tokens(paper_prompt):
    processor, enc = paper_prompt
    assert enc["image_grid_thw"].tolist() == [[1, 64, 80]]  # 896 / 14, 1120 / 14
    assert enc["pixel_values"].shape == (64 * 80, 3 * 2 * 14 * 14)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((enc["input_ids"] == pad).sum()) == 64 * 80 // 4 == 1280


def test_mrope_positions_of_the_real_grid_in_the_image_and_blind_passes(meta_3b, paper_prompt):
    """Text after the image continues at the image's first position + max(h, w) / merge = + 40 (grid 64 x 80);
    the blind pass drops the 1,282 visual columns and keeps every remaining token's 3-D position."""
    _, enc = paper_prompt
    cfg = meta_3b.config
    completion = torch.randint(0, 151000, (1, 16), generator=torch.Generator().manual_seed(0))
    ids = torch.cat([enc["input_ids"], completion], 1)
    attention = torch.ones_like(ids)
    mm = (ids == cfg.image_token_id).long()
    positions = mrope_position_ids(meta_3b, ids, attention, mm, enc["image_grid_thw"])
    start = int((ids[0] == cfg.vision_start_token_id).nonzero()[0, 0])
    first_visual, end = start + 1, start + 1 + 1280  # then <|vision_end|>, then the text
    assert positions[:, 0, first_visual].tolist() == [first_visual] * 3
    assert positions[:, 0, end].tolist() == [first_visual + 40] * 3  # max(32, 40) positions further
    assert positions[:, 0, end + 1].tolist() == [first_visual + 41] * 3
    assert positions[1, 0, first_visual:first_visual + 1280].max() == first_visual + 31  # 64 / 2 rows
    assert positions[2, 0, first_visual:first_visual + 1280].max() == first_visual + 39  # 80 / 2 columns
    blind = blind_inputs(meta_3b, ids, attention, mm, enc["image_grid_thw"], logits_to_keep=16)
    assert blind["input_ids"].size(1) == ids.size(1) - 1282
    assert torch.equal(blind["position_ids"][:, :, start:], positions[:, :, end + 1:])
    assert torch.equal(blind["position_ids"][:, :, :start], positions[:, :, :start])


def test_vision_windows_on_grids_that_do_not_divide_into_windows():
    """The real vision width, heads and 112-pixel windows (4 x 4 merged tokens) with one windowed and one
    full-attention block: two images whose merged grids (5 x 7, 8 x 3) are not multiples of the window give, in
    one batch, exactly what each gives alone (windows never mix images or wrap rows)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig.from_pretrained(QWEN / "config_3b.json")
    cfg.text_config.num_hidden_layers = 1
    cfg.vision_config.depth, cfg.vision_config.fullatt_block_indexes = 2, [1]
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    visual = model.model.visual.to_empty(device="cpu")
    torch.manual_seed(0)
    visual.init_weights()  # random weights, unit norms, the rotary frequencies a meta build leaves empty
    grids = torch.tensor([[1, 10, 14], [1, 16, 6]])
    pixels = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(1))

    def embed(px, g):
        with torch.no_grad():
            out = model.model.get_image_features(px, g)
        pooled = getattr(out, "pooler_output", out)
        return torch.cat(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled

    together = embed(pixels, grids)
    n0 = int(grids[0].prod())
    alone = torch.cat([embed(pixels[:n0], grids[:1]), embed(pixels[n0:], grids[1:])])
    assert together.shape == (10 * 14 // 4 + 16 * 6 // 4, 2048)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_chunked_head_at_the_real_vocabulary_in_bf16():
    """pgpo's chunked log-probs (TRL's kernel) over V = 151,936 (4 full tiles of 32,768 and a partial one) in bf16:
    targets in the first, a middle and the partial last tile match the fp32 full-vocabulary log_softmax to bf16
    precision, and the log-sum-exp spans every tile (a dropped tile would shift every value by far more)."""
    import types

    from pgpo.training.trl_bridge import chunked_logprobs

    vocab, hidden = 151936, 64
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, hidden, generator=g) * 0.5)
        head.weight[4 * 32768:] *= 2  # the partial last tile holds the largest logits: missing it shifts every value
    config = types.SimpleNamespace(get_text_config=lambda: types.SimpleNamespace())
    model = types.SimpleNamespace(config=config, get_output_embeddings=lambda: head)
    h = torch.randn(2, 3, hidden, generator=g).to(torch.bfloat16)
    targets = torch.tensor([[0, 40000, vocab - 1], [32767, 131072, 150000]])
    valid = torch.ones(2, 3, dtype=torch.bool)
    logits = h.float() @ head.weight.float().T
    exact = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    # bf16 model: TRL's tile is a bf16 matmul output, so each logit is rounded to bf16 (8 bits of mantissa) first
    got = chunked_logprobs(model, h, targets, valid)
    rounded = torch.log_softmax(logits.to(torch.bfloat16).float(), -1).gather(-1, targets[..., None])[..., 0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, rounded, rtol=0, atol=2e-3)
    bound = logits.abs().amax() * 2.0 ** -8  # half an ulp of the largest logit, twice (target and log-sum-exp)
    assert (got - exact).abs().max() <= bound
    # an fp32 head (the recipe's model.lm_head_fp32: TRL's cast_lm_head_to_fp32) is exact to fp32
    torch.testing.assert_close(chunked_logprobs(model, h.float(), targets, valid), exact, rtol=0, atol=1e-4)
    without_last_tile = torch.logsumexp(logits[..., :4 * 32768], -1)
    assert (torch.logsumexp(logits, -1) - without_last_tile).min() > 1.0
