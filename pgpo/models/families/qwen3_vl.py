"""Qwen3-VL (2B/4B/8B Instruct): 16-pixel patches merged 2 x 2 (one visual token per 32 x 32 pixels), learned
vision position embeddings, interleaved mRoPE, and DeepStack: features of intermediate vision layers added to the
hidden states of the first language layers at the visual positions. The blind view needs nothing of its own:
with the visual columns dropped there are no visual positions to add to, and with them masked out of attention
the additions stay at positions no text token reads (tests/models/test_families.py checks both equal)."""

from __future__ import annotations

from pgpo.models.families import ModelFamily, register
from pgpo.models.families.qwen2_5_vl import special_ids


def build_tiny(cfg, tokenizer, chat_template):
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=cfg.image_pixels, max_pixels=cfg.image_pixels, patch_size=16,
                                            merge_size=2, temporal_patch_size=2)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": cfg.image_pixels, "longest_edge": cfg.image_pixels},
                                            patch_size=16, merge_size=2)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=chat_template)
    head_dim = cfg.hidden_size // cfg.num_heads
    eighth = head_dim // 8  # interleaved sections (t, h, w) summing to head_dim / 2, as the real configs' [24, 20, 20]
    text_config = {
        "vocab_size": len(tokenizer), "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": head_dim, "max_position_embeddings": 2048,
        "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_interleaved": True,
                            "mrope_section": [head_dim // 2 - 2 * eighth, eighth, eighth]},
    }
    vision_config = {"depth": cfg.vision_depth, "hidden_size": cfg.vision_hidden, "num_heads": cfg.vision_heads,
                     "intermediate_size": 2 * cfg.vision_hidden, "out_hidden_size": cfg.hidden_size, "patch_size": 16,
                     "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
                     "deepstack_visual_indexes": list(range(cfg.vision_depth - 1))}  # every block but the last
    config = Qwen3VLConfig(text_config=text_config, vision_config=vision_config, tie_word_embeddings=True,
                           **special_ids(tokenizer))
    torch.manual_seed(cfg.seed)
    return Qwen3VLForConditionalGeneration(config), processor


register(ModelFamily(name="qwen3_vl", model_types=("qwen3_vl",), hub_prefixes=("Qwen/Qwen3-VL-",),
                     patch_size=16, merge_size=2, build_tiny=build_tiny,
                     # the released processors' budget (64 to 16,384 visual tokens of 32 x 32 px), as Qwen's model
                     # cards state it; not read from the hub here
                     default_pixels=(64 * 32 * 32, 16384 * 32 * 32)))
