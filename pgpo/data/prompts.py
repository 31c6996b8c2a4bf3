"""The prompt of the paper's recipe, shared by warm start, RL training and evaluation (one place, no drift)."""

from __future__ import annotations

import re

SYSTEM_PROMPT = "You are a helpful assistant."
# EasyR1-style instruction: reasoning inside <think></think>, final answer inside \boxed{} (paper, section 4).
INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE put in \\boxed{}."
)


IMAGE_TAG = r"<image\s*\d*>"  # the placeholders datasets write into questions: <image>, <image 1>, ...


def strip_image_tags(text: str) -> str:
    """Drop <image> / <image 1> placeholders (training data and benchmarks write them into the question): the
    images are placed before the text as separate blocks, in training and evaluation alike."""
    return re.sub(IMAGE_TAG, "", text).strip()


def matched_braces(text: str) -> dict[int, int]:
    """{index of '{': index of its matching '}'} in one pass with a stack (linear on any input; unclosed braces
    are absent). Used to read \\boxed{...} answers, in responses and in published golds."""
    close, open_ = {}, []
    for i, c in enumerate(text):
        if c == "{":
            open_.append(i)
        elif c == "}" and open_:
            close[open_.pop()] = i
    return close


def user_text(question: str, choices: list[str] | None = None) -> str:
    """The user turn's text: question, lettered options if any, then the instruction."""
    text = question
    if choices:
        text += "\n" + "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(choices))
    return f"{text}\n{INSTRUCTION}"


def chat_messages(user: str, images=()) -> list[dict]:
    """The chat every path renders (training, the warm start, both evaluation backends): the system prompt, then one
    user turn whose image blocks precede its text (TRL's layout). One block per entry of `images`: an entry that is
    a dict is the block itself (lmms-eval's chat backends: {"type": "image", "url": ...}), anything else gives
    {"type": "image"}."""
    blocks = [im if isinstance(im, dict) else {"type": "image"} for im in images]
    return [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": blocks + [{"type": "text", "text": user}]}]


def conversation(question: str, choices: list[str] | None = None) -> list[dict]:
    """Conversational prompt in TRL's VLM format; TRL inserts the image block before the text."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_text(question, choices)},
    ]
