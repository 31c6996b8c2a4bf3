"""The tiny Qwen2.5-VL: built offline, deterministic, loads through the real processor (torchvision shim)."""

import json

import torch

from pgpo.util.provenance import dir_hash
from pgpo.tiny.model import TinyModelConfig, build_tiny


def test_processor_gives_sixteen_visual_tokens(tiny, tiny_data):
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts

    model, processor = tiny
    records = load_split(tiny_data / "suite_count.jsonl")[:2]
    enc = processor(images=load_images(records), text=prompt_texts(processor, records), padding=True,
                    return_tensors="pt")
    assert (enc["input_ids"] == model.config.image_token_id).sum(-1).tolist() == [16, 16]
    assert enc["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"


def test_build_is_deterministic(tmp_path, tiny_dir):
    again = build_tiny(tmp_path / "again", TinyModelConfig())
    assert dir_hash(again, ("*.safetensors",)) == dir_hash(tiny_dir, ("*.safetensors",))
    assert json.loads((again / "tokenizer.json").read_text()) == json.loads((tiny_dir / "tokenizer.json").read_text())
    other = build_tiny(tmp_path / "other", TinyModelConfig(seed=1))
    assert dir_hash(other, ("*.safetensors",)) != dir_hash(tiny_dir, ("*.safetensors",))


def test_chat_tokens_and_generation(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id
    assert tok.decode(tok("<think>I count.</think>\\boxed{3}")["input_ids"]) == "<think>I count.</think>\\boxed{3}"
    ids = torch.tensor([[tok.convert_tokens_to_ids("<|im_start|>")]])
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 4)
