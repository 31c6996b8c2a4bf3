"""Qwen2.5-VL (the paper's models): 14-pixel patches merged 2 x 2 (one visual token per 28 x 28 pixels),
windowed vision attention, 3-D mRoPE."""

from __future__ import annotations

from pgpo.models.families import ModelFamily, register


def mrope_section(head_dim: int) -> list[int]:
    """(t, h, w) rotary sections summing to head_dim / 2."""
    if head_dim % 4:
        raise ValueError(f"hidden_size/num_heads = {head_dim} must be divisible by 4 for the 3-D mRoPE sections")
    quarter = head_dim // 4
    return [head_dim // 2 - 2 * quarter, quarter, quarter]


def special_ids(tokenizer) -> dict[str, int]:
    """The vision token ids a Qwen-VL config names."""
    return {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}


def build_tiny(cfg, tokenizer, chat_template):
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    image_processor = Qwen2VLImageProcessor(min_pixels=cfg.image_pixels, max_pixels=cfg.image_pixels, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=cfg.image_pixels, max_pixels=cfg.image_pixels)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=chat_template)
    head_dim = cfg.hidden_size // cfg.num_heads
    text_config = {
        "vocab_size": len(tokenizer), "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "max_position_embeddings": 2048, "tie_word_embeddings": True,
        "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(head_dim)},
    }
    vision_config = {"depth": cfg.vision_depth, "hidden_size": cfg.vision_hidden, "num_heads": cfg.vision_heads,
                     "intermediate_size": 2 * cfg.vision_hidden, "out_hidden_size": cfg.hidden_size, "patch_size": 14,
                     "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                     "fullatt_block_indexes": [cfg.vision_depth - 1]}
    config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, tie_word_embeddings=True,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              bos_token_id=None, **special_ids(tokenizer))
    torch.manual_seed(cfg.seed)
    return Qwen2_5_VLForConditionalGeneration(config), processor


register(ModelFamily(name="qwen2_5_vl", model_types=("qwen2_5_vl",), hub_prefixes=("Qwen/Qwen2.5-VL-",),
                     patch_size=14, merge_size=2, build_tiny=build_tiny, memory_model=True))
