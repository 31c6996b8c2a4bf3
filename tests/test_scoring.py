"""Answer extraction and grading shared by the training reward and evaluation."""

import pytest

from pgpo.scoring import accuracy_reward, format_ok, format_reward, grade, grade_detailed, last_boxed


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{3}", "3"), ("a \\boxed{1} b \\boxed{2}", "2"), ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{a{b{c}}d}", "a{b{c}}d"), ("no box", None), ("", None), ("\\boxed{unclosed", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("response, answer, choices, score", [
    ("<think>x</think>\\boxed{4}", "4", None, 1.0),
    ("\\boxed{5}", "4", None, 0.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", None, 1.0),
    ("\\boxed{30^\\circ}", "30", None, 1.0),
    ("\\boxed{50\\%}", "50", None, 1.0),
    ("\\boxed{Blue}", "blue", None, 1.0),
    ("\\boxed{Because}", "B", None, 0.0),  # free-form: a capitalised word is not a letter
    ("\\boxed{C}", "C", ["1", "2", "12"], 1.0),
    ("\\boxed{C. 12}", "C", ["1", "2", "12"], 1.0),
    ("\\boxed{12}", "C", ["1", "2", "12"], 1.0),
    ("\\boxed{B}", "C", ["1", "2", "12"], 0.0),
    ("\\boxed{J}", "J", list("0123456789"), 1.0),
    ("\\boxed{I}", "J", list("0123456789"), 0.0),
    ("\\boxed{A} then \\boxed{B}", "B", ["x", "y"], 1.0),
    ("", "4", None, 0.0),
])
def test_grade(response, answer, choices, score):
    assert grade(response, answer, choices) == score


def test_no_answer_is_counted_as_such():
    assert grade_detailed("I think it is 4", "4").status == "no_answer"


def test_format_and_rewards():
    good, bad = "<think>I count.</think>\\boxed{3}", "\\boxed{3}"
    assert format_ok(good) == 1.0 and format_ok(bad) == 0.0 and format_ok("<think>x</think> 3") == 0.0
    comps = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    assert accuracy_reward(comps, answer=["3", "4"], choices=[[], []]) == [1.0, 0.0]
    assert format_reward(comps) == [1.0, 0.0]
