"""Answer extraction and grading shared by the training reward and evaluation: hand-written golden cases."""

import threading

import pytest

from pgpo.rewards import scoring
from pgpo.rewards.scoring import accuracy_reward, format_ok, format_reward, grade, grade_detailed, last_boxed, letter_set

TEN = list("0123456789")  # MMMU-Pro style: ten options, letters A-J
OPTS = ["1", "2", "12"]


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{3}", "3"), ("a \\boxed{1} b \\boxed{2}", "2"), ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{a{b{c}}d}", "a{b{c}}d"), ("no box", None), ("", None), ("\\boxed{unclosed", None),
    ("\\boxed{1} and \\boxed{2", "1"), ("\\fbox{7}", "7"), ("\\boxed {8}", "8"),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


GOLDEN = [
    # (response, gold answer, choices, expected score)  -- free-form numbers and LaTeX
    ("<think>x</think>\\boxed{4}", "4", None, 1.0),
    ("\\boxed{5}", "4", None, 0.0),
    ("\\boxed{-3}", "-3", None, 1.0),
    ("\\boxed{3}", "-3", None, 0.0),
    ("\\boxed{3.0}", "3", None, 1.0),
    ("\\boxed{1,000}", "1000", None, 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", None, 1.0),  # 0.5 vs \frac{1}{2}, both directions
    ("\\boxed{0.5}", "\\frac{1}{2}", None, 1.0),
    ("\\boxed{1/2}", "0.5", None, 1.0),
    ("\\boxed{\\dfrac{3}{4}}", "0.75", None, 1.0),
    ("\\boxed{0.333}", "\\frac{1}{3}", None, 0.0),  # no rounding tolerance
    ("\\boxed{\\sqrt{3}/2}", "\\frac{\\sqrt{3}}{2}", None, 1.0),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", None, 1.0),
    ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2", None, 1.0),
    ("\\boxed{\\pi}", "3.14159", None, 0.0),
    ("\\boxed{5x}", "5", None, 0.0),
    # units, percent, degrees
    ("\\boxed{30^\\circ}", "30", None, 1.0),  # 30 vs 30^\circ, both directions
    ("\\boxed{30}", "30^\\circ", None, 1.0),
    ("\\boxed{45^{\\circ}}", "45", None, 1.0),
    ("\\boxed{30°}", "30", None, 1.0),
    ("\\boxed{50\\%}", "50", None, 1.0),
    ("\\boxed{12\\text{ cm}}", "12", None, 1.0),
    ("\\boxed{12 cm^2}", "12", None, 1.0),
    ("\\boxed{13 cm}", "12", None, 0.0),
    ("\\boxed{12 meters}", "12", None, 1.0),
    # free-form text, and the capital-letter trap
    ("\\boxed{Blue}", "blue", None, 1.0),
    ("\\boxed{\\text{blue}}", "blue", None, 1.0),
    ("\\boxed{Because}", "B", None, 0.0),  # a free-form word starting with B is not option B
    ("\\boxed{Dog}", "D", None, 0.0),
    ("\\boxed{B}", "Blue", None, 0.0),  # nor is a letter the word it starts
    # letters with the options inside the question text (MMK12, MathVerse, LogicVista)
    ("\\boxed{C. 12}", "C", None, 1.0),
    ("\\boxed{(B)}", "B", None, 1.0),
    ("\\boxed{\\text{(A)}}", "A", None, 1.0),
    ("\\boxed{A, C}", "A, C", None, 1.0),
    ("\\boxed{C,A}", "A, C", None, 1.0),
    ("\\boxed{A}", "A, C", None, 0.0),
    ("\\boxed{AC}", "A, C", None, 1.0),  # a run of letters when the gold names several
    ("\\boxed{AC}", "A", None, 0.0),
    ("\\boxed{(c)}", "C", None, 1.0),
    # multiple choice with the options given
    ("\\boxed{C}", "C", OPTS, 1.0),
    ("\\boxed{C. 12}", "C", OPTS, 1.0),  # "\boxed{C}" vs "C. 12"
    ("\\boxed{12}", "C", OPTS, 1.0),  # option text for its letter
    ("\\boxed{(C)}", "C", OPTS, 1.0),
    ("\\boxed{C}", "12", OPTS, 1.0),  # gold given as the option text
    ("\\boxed{B}", "C", OPTS, 0.0),
    ("\\boxed{2}", "C", OPTS, 0.0),  # another option's text
    ("\\boxed{J}", "J", TEN, 1.0),  # options I and J exist with ten options
    ("\\boxed{I}", "I", TEN, 1.0),
    ("\\boxed{I}", "J", TEN, 0.0),
    ("\\boxed{K}", "A", TEN, 0.0),
    # several \boxed{}: the last counts
    ("\\boxed{A} then \\boxed{B}", "B", ["x", "y"], 1.0),
    ("\\boxed{B} on second thought \\boxed{A}", "B", ["x", "y"], 0.0),
    ("\\boxed{3} no wait \\boxed{4}", "4", None, 1.0),
    # nested braces
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", None, 1.0),
    ("\\boxed{\\frac{1}{\\frac{1}{2}}}", "2", None, 1.0),
    # no usable answer
    ("the answer is 4", "4", None, 0.0),
    ("", "4", None, 0.0),
    (None, "4", None, 0.0),
    ("\\boxed{}", "4", None, 0.0),
    ("\\boxed{4", "4", None, 0.0),
]


@pytest.mark.parametrize("response, answer, choices, score", GOLDEN)
def test_golden(response, answer, choices, score):
    assert grade(response, answer, choices) == score


def test_golden_table_is_large_enough():
    assert len(GOLDEN) >= 40


@pytest.mark.parametrize("response, status", [
    ("I think it is 4", "no_answer"), ("", "no_answer"), ("\\boxed{ }", "no_answer"), ("\\boxed{4}", "ok"),
])
def test_status_says_why(response, status):
    assert grade_detailed(response, "4").status == status


def test_letter_set():
    assert letter_set("C. 12") == {"C"} and letter_set("A and C") == {"A", "C"}
    assert letter_set("Because") is None and letter_set("K") is None


def test_gold_answer_naming_no_option_is_an_error():
    with pytest.raises(ValueError, match="neither a letter nor the text"):
        grade("\\boxed{A}", "seventeen", OPTS)


def test_a_verifier_hang_times_out_and_is_counted(monkeypatch):
    """A sympy hang (a power tower) must not stall a run: it scores 0 with status 'timeout'."""
    monkeypatch.setattr(scoring, "VERIFY_TIMEOUT_S", 1)
    g = grade_detailed("\\boxed{9^{9^{9^{9}}}}", "1")
    assert (g.score, g.status) == (0.0, "timeout")


def test_grading_off_the_main_thread_still_works():
    out = []
    t = threading.Thread(target=lambda: out.append(grade("\\boxed{\\frac{1}{2}}", "0.5")))
    t.start()
    t.join()
    assert out == [1.0]


def test_format_and_rewards():
    good, bad = "<think>I count.</think>\\boxed{3}", "\\boxed{3}"
    assert format_ok(good) == 1.0 and format_ok(bad) == 0.0 and format_ok("<think>x</think> 3") == 0.0
    comps = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    assert accuracy_reward(comps, answer=["3", "4"], choices=[[], []]) == [1.0, 0.0]
    assert format_reward(comps) == [1.0, 0.0]


def test_training_reward_and_evaluation_share_the_grade():
    from pgpo.evaluation import docs

    doc = {"answer": "C", "choices": OPTS}
    responses = ["\\boxed{12}", "\\boxed{B}", "no answer", "\\boxed{C}"]
    assert docs.process_results(doc, [responses])["avg_at_k"] == 0.5
    comps = [[{"role": "assistant", "content": r}] for r in responses]
    assert accuracy_reward(comps, answer=["C"] * 4, choices=[OPTS] * 4) == [1.0, 0.0, 0.0, 1.0]
