"""Warm-start label noise: deterministic, per-task answer sets, requested share."""

import random

from pgpo.data.datasets import Record
from pgpo.tiny.warmstart import noisy_answers


def _records(n=400):
    return [Record(f"r{i}", "count" if i % 2 else "colour", "q", str(i % 5) if i % 2 else ["red", "blue"][i % 4 // 2],
                   [], "img") for i in range(n)]


def test_no_noise_is_identity():
    recs = _records()
    assert noisy_answers(recs, 0.0, random.Random(0)) is recs


def test_noise_share_and_answer_sets():
    recs = _records()
    noisy = noisy_answers(recs, 0.5, random.Random(0))
    assert noisy == noisy_answers(recs, 0.5, random.Random(0))
    changed = sum(a.answer != b.answer for a, b in zip(recs, noisy)) / len(recs)
    # half are redrawn; a redraw keeps the answer with prob 1/K (K = 5 for count, 2 for colour)
    assert abs(changed - 0.5 * (0.5 * 4 / 5 + 0.5 * 1 / 2)) < 0.07
    for a, b in zip(recs, noisy):
        assert b.answer in ({"0", "1", "2", "3", "4"} if a.task == "count" else {"red", "blue"})
        assert (a.id, a.task, a.image) == (b.id, b.task, b.image)
