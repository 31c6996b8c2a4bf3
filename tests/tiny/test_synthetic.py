"""Synthetic suites: deterministic, balanced enough, and not answerable from the text (except the control)."""

from collections import Counter

import numpy as np
import pytest

from pgpo.tiny.synthetic import TASKS, VISUAL_TASKS, make_item


def test_items_are_deterministic_in_the_seed():
    a, b = make_item("digit", 3, "train", 7), make_item("digit", 3, "train", 7)
    assert a.answer == b.answer and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    c = make_item("digit", 4, "train", 7)
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image)) or a.answer != c.answer


def test_splits_differ():
    train = [make_item("count", 0, "train", i).image.tobytes() for i in range(30)]
    evals = {make_item("count", 0, "eval", i).image.tobytes() for i in range(30)}
    assert sum(t in evals for t in train) < 10  # identical images only by chance on a small answer space


@pytest.mark.parametrize("task", VISUAL_TASKS)
def test_visual_answers_cannot_be_read_from_the_text(task):
    items = [make_item(task, 0, "eval", i) for i in range(300)]
    by_text = {}
    for it in items:
        by_text.setdefault((it.question, tuple(it.choices or ())), []).append(it.answer)
    assert len(by_text) == 1, "one fixed question per visual task"
    answers = next(iter(by_text.values()))
    majority = Counter(answers).most_common(1)[0][1] / len(answers)
    n_classes = len(set(answers))
    assert n_classes >= 2 and majority < 1.6 / n_classes  # a text-only guesser stays near chance
    # and the image does carry the answer: items with different answers have different images
    assert len({it.image.tobytes() for it in items}) > n_classes


def test_control_is_answerable_from_text():
    for i in range(20):
        it = make_item("control", 0, "eval", i)
        a, b = [int(x) for x in it.question.rstrip("?").split() if x.isdigit()]
        assert it.answer == str(a + b)
    assert len({make_item("control", 0, "eval", i).image.tobytes() for i in range(20)}) == 1  # blank canvas


def test_seven_visual_skills_plus_control():
    assert len(VISUAL_TASKS) == 7 and set(TASKS) - set(VISUAL_TASKS) == {"control"}
