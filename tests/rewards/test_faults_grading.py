"""Fault matrix, grading side: the grader is the training reward, so no response may stall it. Every pattern is
linear (adversarial strings from the fault matrix, a hypothesis fuzz), the whole grade has a hard time limit, and
the linear rewrites agree with the simple (backtracking) definitions they replaced on inputs those can handle."""

import re
import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.rewards import scoring
from pgpo.rewards.scoring import format_ok, grade_detailed, last_boxed, letter_list

# -- the definitions before the rewrite: correct, but exponential / quadratic / cubic on adversarial input ----


def naive_last_boxed(text):
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start:i - 1]
    return None


NAIVE_LETTER_LIST = re.compile(r"[A-J](?:\s*(?:,|and|&|\s)\s*[A-J])+", flags=re.IGNORECASE)
NAIVE_FORMAT = re.compile(r"\s*<think>.+?</think>.*\\boxed\{.*\}.*", re.DOTALL)


def naive_format_ok(response):
    return float(bool(NAIVE_FORMAT.fullmatch(response)) and naive_last_boxed(response.split("</think>")[-1])
                 is not None)


# -- the fault matrix's adversarial strings ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_letter_list_with_long_space_runs_grades_at_once(monkeypatch):
    """125 characters that took the old letter-list regex more than 150 s against a letter gold."""
    monkeypatch.setattr(scoring, "VERIFY_TIMEOUT_S", 20)
    response = "\\boxed{" + "            ".join(["A"] + ["B"] * 9) + " x}"
    assert len(response) > 120
    g = grade_detailed(response, "A")
    assert (g.score, g.status) == (0.0, "ok")  # graded, not cut by the time limit
    assert grade_detailed("\\boxed{A            C}", "A, C").score == 1.0


@pytest.mark.timeout(60)
def test_thousands_of_unclosed_boxes_are_linear(monkeypatch):
    monkeypatch.setattr(scoring, "VERIFY_TIMEOUT_S", 20)
    text = "\\boxed{7} " + "\\boxed{" * 5000
    assert last_boxed(text) == "7"
    assert last_boxed("\\boxed{" * 5000) is None
    assert grade_detailed(text, "7").status == "ok"


@pytest.mark.timeout(60)
def test_format_check_on_many_think_tags_is_linear():
    text = "<think>x" + "</think>\\boxed{" * 3000
    assert format_ok(text) == 0.0
    assert format_ok("<think>x</think> \\boxed{1}") == 1.0


@pytest.mark.timeout(60)
def test_the_whole_grade_has_a_hard_time_limit(monkeypatch):
    """Not only math-verify: a grade stuck anywhere (here: number parsing spinning) is cut and counted."""

    def spin(_):
        while True:
            pass

    monkeypatch.setattr(scoring, "VERIFY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(scoring, "_as_number", spin)
    start = time.monotonic()
    g = grade_detailed("\\boxed{12}", "13")
    assert (g.score, g.status) == (0.0, "timeout")
    assert time.monotonic() - start < 5


def test_an_outer_timer_survives_a_grade():
    """pytest-timeout (and any caller's own limit) uses the same interval timer: it must be re-armed."""
    old = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        grade_detailed("\\boxed{\\frac{1}{2}}", "0.5")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < remaining <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- fuzz: bounded on anything, equal to the simple definitions where those finish -----------------------------

PIECES = ["\\boxed{", "\\fbox{", "{", "}", " ", "  ", "A", "B", "c", ",", "and", "&", "<think>", "</think>",
          "\\text{", "^", "\\circ", "1", "2.5", ".", "$", "%", "\\frac{1}{2}", "x", "\n"]
adversarial = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(adversarial)
def test_grading_is_bounded_on_adversarial_text(text):
    for gold, choices in (("A", None), ("A, C", None), ("2.5", None), ("B", ["1", "2", "3"])):
        g = grade_detailed(text, gold, choices)
        assert g.status in {"ok", "no_answer", "timeout", "error"} and g.score in (0.0, 1.0)
        assert g.status != "timeout", text  # 60 pieces must grade well within the limit
    assert format_ok(text) == naive_format_ok(text)
    assert last_boxed(text) == naive_last_boxed(text)


LIST_TOKENS = ["A", "B", "C", "j", "K", ",", "&", "and", "AND", "x", "(A)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LIST_TOKENS), min_size=1, max_size=8), st.sampled_from([" ", "  ", " \t "]))
def test_letter_list_agrees_with_the_regex_it_replaced(tokens, space):
    text = space.join(tokens)
    expected = NAIVE_LETTER_LIST.fullmatch(re.sub(r"\(([A-Za-z])\)", r"\1", text))  # '(A)' lists as 'A' does
    got = letter_list(text)
    assert (got is not None) == bool(expected), text
    if got:
        assert got == re.findall(r"[A-J]", re.sub(r"(?i)\band\b", " ", text).upper())
