"""Answer extraction and rule-based grading: the ONE place used by the training reward and by evaluation.

No LLM judge anywhere. The answer is the content of the LAST \\boxed{...} (brace-matched). Multiple-choice items
(choices given) compare option letters (A-Z, case-insensitive: 'b', '(B)', 'B. 12'), accepting the option's text
for its letter; free-form items compare normalised strings, then option letters when the gold is a letter or a
letter list ('A, C' = '(A), (C)' = 'a and c'), then numbers (percent, degrees, thousands separators; an integer
gold must be met exactly, a decimal gold within 1e-6 relative), then math-verify (LaTeX, fractions).
Policies: 'Option C' / 'the answer is C' inside the box is not read as C (box the letter); when the options are
only inline in the question (no `choices`), a letter gold is met by letters alone, not by the option's text.
Grading is the training reward, so one adversarial response must not stall a step: every pattern here is linear
in the response length, and the whole grade of one item runs under a hard time limit (VERIFY_TIMEOUT_S, SIGALRM
in the main thread); a timeout or verifier error scores 0 and is counted in the returned status.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pgpo.data.prompts import matched_braces

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # option letters when choices are given (MMMU-Pro has 12-option items)
INLINE_LETTERS = "ABCDEFGHIJ"  # letters read as options in free-form answers ('x' or 'K' there is a variable)
VERIFY_TIMEOUT_S = 5  # hard limit on grading one item (parsing, math-verify, everything)


@dataclass(frozen=True)
class Grade:
    """A graded response: score 1.0/0.0 and why (ok, no_answer, timeout, error)."""

    score: float
    status: str
    extracted: str | None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with nested braces matched; None if there is none.
    One pass over the text (braces matched with a stack), so thousands of unclosed \\boxed{ stay linear."""
    if not text:
        return None
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    close = matched_braces(text)
    for start in reversed(starts):
        end = close.get(start - 1)  # start is just past the box's opening brace
        if end is not None:
            return text[start:end]
    return None


def _strip_latex(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    return s.strip().rstrip(".").strip()


def normalize(s: str) -> str:
    """Case-folded, whitespace-collapsed answer text without LaTeX text wrappers or a trailing period."""
    return re.sub(r"\s+", " ", _strip_latex(s)).lower()


# units a number may carry in a free-form answer (geometry, physics); stripped only after a number
# (no single letters: '3 h' or '5 s' may be a variable, and answers are lower-cased before this)
_UNITS = r"(?:square\s+)?(?:units?|cm|mm|km|meters?|in|inches|ft|feet|kg|sec|seconds?|min|minutes?|hours?|degrees?)"
_UNIT_SUFFIX = re.compile(rf"^(-?[\d.,]+)\s*{_UNITS}(?:\s*(?:\^\s*\{{?[23]\}}?|²|³))?$")


def _numeral(s: str) -> str:
    """The numeral of a numeric answer: units, degrees, percent and thousands separators removed."""
    s = normalize(s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\%|%|\\degree|\\?textdegree", "", s).strip()
    s = _UNIT_SUFFIX.sub(r"\1", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s


def _as_number(s: str) -> float | None:
    try:
        return float(_numeral(s))
    except ValueError:
        return None


_GOLD_UNITS = r"(?:m|cm|mm|km|g|kg|s|h|l|ml|yuan|sets?|pieces?|people|students?|times|units?|degrees?)"


def clean_gold(answer: str) -> str:
    """A published gold as math-verify can read it: MMK12 writes '$$105^{ \\circ }$$', '$$\\left (\\dfrac{5}{2},
    3\\right )$$', '$$108\\mathrm \\pi$$', '40m.'; boxed as published, math-verify parses none of them, so a correct
    answer to them scores 0. Only golds are cleaned (a response is graded as written)."""
    g = answer.strip().replace("$", "")
    g = re.sub(r"\\left\s*([(\[|])", r"\1", g)
    g = re.sub(r"\\right\s*([)\]|])", r"\1", g)
    g = g.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    g = re.sub(r"\\mathrm\s*\{?\s*\\pi\s*\}?", r"\\pi", g)
    g = re.sub(r"\^\s*\{\s*\\circ\s*\}", r"^\\circ", g)
    g = re.sub(r"\\?textdegree", r"^\\circ", g)
    m = re.fullmatch(rf"(-?\d[\d,]*(?:\.\d+)?)\s*{_GOLD_UNITS}\.?", g, flags=re.IGNORECASE)
    if m:  # '40m.' / '360 sets': the number (a response naming the unit is read with its unit stripped too)
        return m.group(1)
    return g.strip().rstrip(".").strip()


def choice_letter(text: str, choices: list[str]) -> str | None:
    """The option letter a response or gold answer names: 'C', '(C)', 'C.', 'C. 12', or an option's exact text."""
    letters = LETTERS[:len(choices)]
    t = _strip_latex(text)
    m = re.fullmatch(r"\(?([A-Za-z])\)?(?:[.:)]\s*.*)?", t, flags=re.DOTALL)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    norm = normalize(t)
    for letter, option in zip(letters, choices):
        if norm == normalize(option):
            return letter
    return None


_ONE_LETTER = re.compile(r"\(?([A-J])\)?(?:[.:)]\s*.*)?", flags=re.DOTALL | re.IGNORECASE)
_LETTER_RUN = re.compile(r"[A-J]{2,10}")  # 'AC': read as letters only when the gold names several
_LIST_TOKEN = re.compile(r"[A-Za-z]+|,|&|\S")  # words, separators, any other character; spaces skipped


def letter_list(text: str) -> list[str] | None:
    """'A, C' / 'a and C' / 'A & C' / 'A C' -> ['A', 'C'] (two or more letters, at most one separator between
    two letters); else None. A token scan, not a regex with nested quantifiers: linear on any input."""
    letters, want_letter = [], True
    text = re.sub(r"\(([A-Za-z])\)", r"\1", text)  # '(A), (C)' lists the letters 'A, C' do
    for tok in _LIST_TOKEN.findall(text):
        is_letter = len(tok) == 1 and tok.upper() in INLINE_LETTERS
        if is_letter:
            letters.append(tok.upper())
            want_letter = False
        elif not want_letter and (tok in (",", "&") or tok.lower() == "and"):
            want_letter = True
        else:
            return None
    return letters if len(letters) >= 2 and not want_letter else None


def letter_set(text: str, several: bool = False) -> frozenset[str] | None:
    """Option letters a text names: 'C', '(c)', 'C. 12' -> {C}; 'A, C' / 'A and C' (and 'AC' when `several`)
    -> {A, C}; else None. For free-form items whose gold is a letter (options inside the question text)."""
    t = _strip_latex(text)
    listed = letter_list(t)  # first: '(A), (C)' would otherwise read as 'A' followed by ') ...' text
    if listed:
        return frozenset(listed)
    m = _ONE_LETTER.fullmatch(t)
    if m:
        return frozenset(m.group(1).upper())
    if several and _LETTER_RUN.fullmatch(t):
        return frozenset(t.upper())
    return None


class GradeTimeout(BaseException):
    """Raised by the alarm inside a grade; a BaseException so math-verify's `except Exception` cannot eat it."""


@contextmanager
def time_limit(seconds: float | None):
    """Interrupt the block after `seconds` (main thread only: signals are delivered there). An outer interval
    timer (pytest-timeout, another limit) is suspended and re-armed with its remaining time afterwards."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise GradeTimeout

    outer_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    outer_handler = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_remaining:
            signal.setitimer(signal.ITIMER_REAL, max(outer_remaining - (time.monotonic() - started), 1e-3))


class _OurTimeLimit(logging.Filter):
    """math-verify warns once per process that its timeout is off: it is, because time_limit bounds the grade."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_OurTimeLimit())


def _verify(gold: str, pred: str) -> tuple[bool, str]:
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException  # not a TimeoutError subclass

    # in the main thread the caller's time_limit bounds everything (math-verify's own alarm would cancel it);
    # elsewhere math-verify's timeout cannot work either (it uses SIGALRM), so none is passed
    try:
        g = parse(f"\\boxed{{{gold}}}", parsing_timeout=None, raise_on_error=True)
        p = parse(f"\\boxed{{{pred}}}", parsing_timeout=None, raise_on_error=True)
        return bool(g and p and verify(g, p, timeout_seconds=None, raise_on_error=True)), "ok"
    except (TimeoutError, TimeoutException):
        return False, "timeout"
    except Exception:  # sympy raises many kinds on malformed LaTeX: an unparsable answer is a wrong answer
        return False, "error"


def _is_integer_text(answer: str) -> bool:
    """A gold written as a whole number ('2021', '1,000', '30^\\circ'; not '2021.0' or '1e3')."""
    return re.fullmatch(r"-?\d+", _numeral(answer)) is not None


def _is_letter_gold(answer: str) -> bool:
    return bool(re.fullmatch(r"\(?[A-J]\)?", answer.strip()) or letter_list(answer.strip()))


def grade_detailed(response: str, answer: str, choices: list[str] | None = None, abs_tol: float = 0.0) -> Grade:
    """Grade one response against its gold answer (see the module docstring), within VERIFY_TIMEOUT_S.

    `abs_tol` > 0: a benchmark's own numeric rule (declared in its task YAML, `metadata.grading.abs_tol`; DynaMath's
    scorer: 0.001), applied to decimal golds: a number or an expression that evaluates to one (2\\pi/3) within
    abs_tol of the gold. Off (0) everywhere else; integer golds are always compared exactly."""
    try:
        with time_limit(VERIFY_TIMEOUT_S):
            return _grade(response, answer, choices, abs_tol)
    except GradeTimeout:
        return Grade(0.0, "timeout", None)


def _numeric_value(text: str) -> float | None:
    """A number, or a closed-form expression math-verify evaluates to a real number ('\\frac{2\\pi}{3}')."""
    number = _as_number(text)
    if number is not None:
        return number
    from math_verify import parse

    try:
        parsed = parse(f"\\boxed{{{text}}}", parsing_timeout=None, raise_on_error=True)
        value = complex(parsed[0].evalf()) if parsed else None
    except Exception:  # not an expression sympy can evaluate: no numeric value
        return None
    return value.real if value is not None and abs(value.imag) < 1e-12 else None


def _grade(response: str, answer: str, choices: list[str] | None, abs_tol: float = 0.0) -> Grade:
    pred = last_boxed(response or "")
    if pred is None or not pred.strip():
        return Grade(0.0, "no_answer", pred)
    if choices:
        gold_letter = choice_letter(answer, choices)
        if gold_letter is None:
            raise ValueError(f"gold answer {answer!r} is neither a letter nor the text of one of {choices}")
        return Grade(float(choice_letter(pred, choices) == gold_letter), "ok", pred)
    if normalize(pred) == normalize(answer):
        return Grade(1.0, "ok", pred)
    gold_letters = letter_set(answer) if _is_letter_gold(answer) else None
    if gold_letters:  # options inline in the question: compare the letters named, order-free
        return Grade(float(letter_set(pred, several=len(gold_letters) > 1) == gold_letters), "ok", pred)
    answer = clean_gold(answer)
    if normalize(pred) == normalize(answer):
        return Grade(1.0, "ok", pred)
    a, p = _as_number(answer), _as_number(pred)
    if a is not None and p is not None:
        if _is_integer_text(answer):  # 2021 is not 2021.001, 7685413092 is not 7685413000 (a relative 1e-6 is)
            return Grade(float(p == a), "ok", pred)
        return Grade(float(abs(a - p) <= max(1e-6 * max(1.0, abs(a)), abs_tol)), "ok", pred)
    if abs_tol and a is not None and not _is_integer_text(answer):
        value = _numeric_value(pred)
        if value is not None:
            return Grade(float(abs(a - value) <= abs_tol), "ok", pred)
    ok, status = _verify(answer, pred)
    return Grade(float(ok), status, pred)


def grade(response: str, answer: str, choices: list[str] | None = None, abs_tol: float = 0.0) -> float:
    """1.0 if the last \\boxed{} answer of the response matches the gold answer, else 0.0."""
    return grade_detailed(response, answer, choices, abs_tol).score


def format_ok(response: str) -> float:
    """1.0 if reasoning is inside <think>...</think> and an answer in \\boxed{} follows it. String searches, not
    a backtracking pattern (`<think>.+?</think>.*\\boxed{.*}.*` is cubic on adversarial text)."""
    text = (response or "").lstrip()
    if not text.startswith("<think>"):
        return 0.0
    close = text.find("</think>", len("<think>") + 1)  # at least one character of reasoning
    if close < 0:
        return 0.0
    rest = text[close + len("</think>"):]
    box = rest.find("\\boxed{")
    if box < 0 or rest.find("}", box + len("\\boxed{")) < 0:
        return 0.0
    return float(last_boxed(response.split("</think>")[-1]) is not None)


def _texts(completions) -> list[str]:
    return [c[-1]["content"] if isinstance(c, list) else c for c in completions]


def accuracy_reward(completions, answer, choices=None, **_) -> list[float]:
    """TRL reward function: rule-based accuracy of each completion (weight 0.9 in the paper)."""
    choices = choices or [None] * len(answer)
    return [grade(t, a, c) for t, a, c in zip(_texts(completions), answer, choices)]


def format_reward(completions, **_) -> list[float]:
    """TRL reward function: the <think>/\\boxed{} format (weight 0.1 in the paper)."""
    return [format_ok(t) for t in _texts(completions)]


REWARD_FUNCS = (accuracy_reward, format_reward)
REWARD_WEIGHTS = (0.9, 0.1)
