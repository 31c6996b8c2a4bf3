"""Filler words of the testbed: whole words of the tiny tokenizer's own corpus that encode to exactly one token
after a space (so L words are L tokens and a uniform choice has entropy ln(#words) per token).

Excluded: single letters, digits (answers of the digit and count skills), colour names and every answer string of
the synthetic tasks (a filler word must never read as an answer), and capitalised words (instruction shouting:
BE, MUST). The list is a deterministic function of the tokenizer (sorted by token id).
"""

from __future__ import annotations

import re

import numpy as np


def _corpus_words() -> set[str]:
    from pgpo.tiny.model import training_corpus

    return {w for text in training_corpus() for w in re.findall(r"[A-Za-z]+", text)}


def _answer_words() -> set[str]:
    from pgpo.tiny.synthetic import COLOURS, TASKS, make_item

    answers = set(COLOURS)
    for task in TASKS:
        for i in range(60):
            item = make_item(task, 0, "train", i)
            answers |= {item.answer.lower(), *(w.lower() for c in item.choices or [] for w in c.split())}
    return answers


def filler_words(tokenizer) -> list[str]:
    """The filler vocabulary of `tokenizer`, in token-id order. Each word w satisfies: ' ' + w is one token."""
    vocab = tokenizer.get_vocab()
    corpus, answers = _corpus_words(), _answer_words()
    found = []
    for word in sorted(corpus):
        if len(word) < 2 or not word.isalpha() or not word.islower() or word in answers:
            continue
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            found.append((ids[0], word))
    if len(found) < 2:
        raise ValueError(f"the tokenizer has {len(found)} single-token filler word(s); the testbed needs several "
                         f"(vocabulary size {len(vocab)})")
    return [w for _, w in sorted(found)]


def random_filler(words: list[str], length: int, rng: np.random.Generator) -> list[str]:
    """`length` words drawn uniformly with replacement."""
    return [words[i] for i in rng.integers(0, len(words), size=length)]


def filler_text(filler: list[str]) -> str:
    """The text between <think> and </think>: every word after a space (' w1 w2 ... wL'), one token each."""
    return "".join(" " + w for w in filler)
