"""Prompt encoding and HF-generate sampling for the tiny default (warm start, quick held-out checks).

Prompts are rendered exactly as TRL renders them for training (one image block per image, all before the text of
the user turn, explicit system prompt), so the warm start, RL and evaluation see identical token sequences.
"""

from __future__ import annotations

import torch
from PIL import Image

from pgpo.data.datasets import Record
from pgpo.data.prompts import chat_messages, user_text
from pgpo.rewards.scoring import grade


def multimodal_messages(record: Record) -> list[dict]:
    """The record's chat: the user turn holds one image block per image, before its text (TRL's layout)."""
    return chat_messages(user_text(record.question, record.choices), record.images)


def prompt_texts(processor, records: list[Record]) -> list[str]:
    return [processor.apply_chat_template(multimodal_messages(r), add_generation_prompt=True, tokenize=False)
            for r in records]


def load_images(records: list[Record]) -> list[Image.Image]:
    """Every image of every record, flattened in prompt order (the processor consumes them in that order)."""
    return [Image.open(path).convert("RGB") for r in records for path in r.images]


def target_text(record: Record) -> str:
    """The warm-start target: a short rationale in <think></think>, then the boxed answer."""
    return f"<think>{record.rationale}</think>\\boxed{{{record.answer}}}"


@torch.no_grad()
def sample(model, processor, records: list[Record], k: int = 1, temperature: float = 1.0, top_p: float = 1.0,
           max_new_tokens: int = 32, batch_size: int = 64, seed: int = 0) -> list[list[str]]:
    """k completions per record (greedy when temperature == 0). Returns [len(records)][k] strings."""
    torch.manual_seed(seed)
    tok = processor.tokenizer
    tok.padding_side = "left"
    model.eval()
    out: list[list[str]] = [[] for _ in records]
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        enc = processor(images=load_images(chunk), text=prompt_texts(processor, chunk), padding=True,
                        return_tensors="pt").to(model.device)
        gen = model.generate(**enc, do_sample=temperature > 0, temperature=temperature or None,
                             top_p=top_p if temperature > 0 else None, top_k=None, max_new_tokens=max_new_tokens,
                             num_return_sequences=k, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in enumerate(texts):
            out[start + i // k].append(text)
    return out


@torch.no_grad()
def sample_batch(model, processor, records: list[Record], k: int, temperature: float, max_new_tokens: int,
                 vision_ids: list[int]) -> dict:
    """k sampled completions per record (HF generate, vision tokens suppressed), laid out for a scoring forward:
    {"enc": the processor's left-padded prompt batch, "prompt" [N,P] ids (N = len(records) * k, record-major),
    "completion" [N,T] ids, "completion_mask" [N,T] (through the first end of sequence), "prompt_mask" [N,P],
    "mm" [N,P] multimodal token types, "grids" [N,3], "pixels" [N * patches, D] (one image per record)}."""
    tok = processor.tokenizer
    enc = processor(images=load_images(records), text=prompt_texts(processor, records), padding=True,
                    return_tensors="pt")
    gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=None,
                         max_new_tokens=max_new_tokens, num_return_sequences=k, suppress_tokens=vision_ids,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    p_len = enc["input_ids"].size(1)
    comp = gen[:, p_len:]
    ended = (comp == tok.eos_token_id).int().cumsum(-1)

    def rep(x):
        return x.repeat_interleave(k, dim=0)

    pixels = enc["pixel_values"].view(len(records), -1, enc["pixel_values"].size(-1))
    return {"enc": enc, "prompt": gen[:, :p_len], "completion": comp,
            "completion_mask": ((ended == 0) | ((ended == 1) & (comp == tok.eos_token_id))).long(),
            "prompt_mask": rep(enc["attention_mask"]), "mm": rep(enc["mm_token_type_ids"]),
            "grids": rep(enc["image_grid_thw"]), "pixels": rep(pixels).flatten(0, 1)}


def accuracy(records: list[Record], completions: list[list[str]]) -> dict[str, float]:
    """avg@k per task and overall: mean over questions of the per-question mean score."""
    per_task: dict[str, list[float]] = {}
    for r, texts in zip(records, completions):
        per_task.setdefault(r.task, []).append(sum(grade(t, r.answer, r.choices) for t in texts) / len(texts))
    result = {t: sum(v) / len(v) for t, v in sorted(per_task.items())}
    result["all"] = sum(sum(v) for v in per_task.values()) / sum(len(v) for v in per_task.values())
    return result
