"""Build a tiny Qwen2.5-VL (or another family of pgpo.models.families) fully offline: a byte-level BPE trained on the
project's own text, the family's real processor and model classes, saved as a Hugging Face directory that transformers, TRL and lmms-eval
load like the real checkpoints. Deterministic in the seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pgpo.util.atomic import write_atomic

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]
# Qwen2-VL's chat template (format only): default system prompt, images as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content "
    "or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' "
    "or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class TinyModelConfig:
    """Size of the tiny Qwen2.5-VL (defaults: measured to learn the synthetic tasks on 2 CPU cores)."""

    vocab_size: int = 512  # BPE budget; ~512 keeps colour names and templates whole tokens
    hidden_size: int = 192  # text hidden width
    num_layers: int = 3  # text decoder layers
    num_heads: int = 6  # text attention heads
    num_kv_heads: int = 2  # grouped-query KV heads
    intermediate_size: int = 512  # text MLP width
    vision_depth: int = 2  # vision transformer blocks
    vision_hidden: int = 96  # vision width
    vision_heads: int = 4  # vision attention heads
    image_pixels: int = 112 * 112  # fixed pixel budget: every image gives the same number of visual tokens
    seed: int = 0  # initialisation seed
    family: str = "qwen2_5_vl"  # pgpo.models.families: which architecture (qwen2_5_vl, qwen3_vl)


def training_corpus() -> list[str]:
    from pgpo.data import prompts
    from pgpo.tiny.synthetic import task_corpus

    chat = [prompts.SYSTEM_PROMPT, prompts.INSTRUCTION, "system", "user", "assistant", "<think>", "</think>",
            "\\boxed{", "}", "A. ", "B. ", "C. ", "D. ", "\n"]
    lines = task_corpus()
    think = [f"<think>{r}</think>\\boxed{{{a}}}" for r, a in zip(lines[2::4], lines[1::4])]
    return (chat * 20) + (lines * 5) + think * 5


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(training_corpus(), trainer=trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                             unk_token=None, bos_token=None, errors="replace")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny(out_dir: str | Path, cfg: TinyModelConfig | None = None) -> Path:
    """Write a tiny checkpoint of cfg.family (model + processor + build config) to out_dir."""
    from pgpo.models.families import family_named

    cfg = cfg or TinyModelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg.vocab_size)
    model, processor = family_named(cfg.family).build_tiny(cfg, tokenizer, CHAT_TEMPLATE)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    record = asdict(cfg)
    if cfg.family == TinyModelConfig.family:  # the default family's record stays what it always was
        record.pop("family")
    write_atomic(out / "tiny_build.json", json.dumps(record, indent=2))
    return out
