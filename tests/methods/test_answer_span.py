"""pgpo/methods/answer_span.py: the answer tokens are exactly those carrying the last \\boxed{...} content, on the tiny
tokenizer and on the real Qwen2.5-VL vocabulary (tests/fixtures/qwen)."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.methods.answer_span import answer_char_span, answer_token_mask
from pgpo.rewards.scoring import last_boxed

QWEN = Path(__file__).parents[1] / "fixtures" / "qwen"


@pytest.fixture(scope="module")
def qwen_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN)


@given(st.text(alphabet="ab{}\\boxedfx 1", max_size=40))
@settings(max_examples=300, deadline=None)
def test_char_span_is_the_box_last_boxed_grades(text):
    span = answer_char_span(text)
    boxed = last_boxed(text)
    assert (span is None) == (boxed is None)
    if span is not None:
        assert text[span[0]:span[1]] == boxed


def _mask(tokenizer, texts, pad_left=0):
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, rows)) + pad_left
    ids = torch.full((len(rows), width), 0)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # right padding, as TRL lays out completions
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask, answer_token_mask(ids, mask, tokenizer)


def _marked_text(tokenizer, ids, marks):
    return tokenizer.decode(ids[marks].tolist())


def test_tiny_tokenizer_marks_the_answer_tokens_only(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    texts = ["<think>I count the squares.</think>\\boxed{3}", "<think>I look at the circle.</think>\\boxed{red}",
             "no box here", "<think>x</think>\\boxed{}", "\\boxed{1} then \\boxed{A}"]
    ids, mask, marks = _mask(tok, texts, pad_left=3)
    assert _marked_text(tok, ids[0], marks[0]) == "3"
    assert _marked_text(tok, ids[1], marks[1]).strip() == "red"
    assert not marks[2].any() and not marks[3].any()  # no box / an empty box: no answer token
    assert _marked_text(tok, ids[4], marks[4]) == "A"  # the LAST box, as graded
    assert not (marks & ~mask.bool()).any()  # padding is never marked


def test_real_qwen_vocabulary_multi_token_answers(qwen_tokenizer):
    texts = ["<think>The area is 12 times 3.</think>\\boxed{36\\pi}", "Answer: \\boxed{\\frac{1}{2}} done.<|im_end|>",
             "<think>é à ü</think>\\boxed{ü}"]
    ids, _, marks = _mask(qwen_tokenizer, texts)
    assert _marked_text(qwen_tokenizer, ids[0], marks[0]) == "36\\pi"
    # a token that merges a box brace with the answer's first/last characters overlaps the answer: it is marked
    assert _marked_text(qwen_tokenizer, ids[1], marks[1]) == "{\\frac{1}{2}}"
    assert "ü" in _marked_text(qwen_tokenizer, ids[2], marks[2])
    # the box's own tokens (\boxed{ and }) are not the answer
    for i in range(2):  # never the \boxed word itself
        assert "boxed" not in _marked_text(qwen_tokenizer, ids[i], marks[i])


def test_multi_byte_runs_stay_linear_and_exact(qwen_tokenizer, monkeypatch):
    """Byte pieces of one character share a span, and a long completion never takes the quadratic path."""
    from pgpo.methods import answer_span

    text = "<think>" + "é ü 中文 " * 200 + "</think>\\boxed{中}"
    ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
    spans = answer_span.token_char_spans(ids, qwen_tokenizer)
    assert spans[-1][1] == len(qwen_tokenizer.decode(ids))
    calls = []
    decode = qwen_tokenizer.decode
    monkeypatch.setattr(qwen_tokenizer, "decode", lambda x, **k: calls.append(len(x)) or decode(x, **k))
    marks = answer_token_mask(torch.tensor([ids]), torch.ones(1, len(ids)), qwen_tokenizer)
    # linear: two whole decodes, every other call a run of at most 4 pieces (the exact fallback decodes prefixes)
    assert sorted(calls)[-3] <= 4 and max(calls) == len(ids)
    assert decode(torch.tensor(ids)[marks[0]].tolist()) == "中"
