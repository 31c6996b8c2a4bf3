"""Selectable graders for `pgpo score`, so the same logged samples can be scored both ways.

- `pgpo` (default): pgpo.rewards.scoring.grade_detailed, the training reward's own grader.
- `mathruler`: the grader EasyR1 and PAPO's evaluation use (mathruler.grader: the last \\boxed{} content, then
  `grade_answer(given, ground_truth)`: normalised string match, then sympy equality). It knows no option lists,
  so a multiple-choice item is graded against its gold letter as written; it has no per-benchmark numeric rule.
  Run under the same hard time limit as pgpo's grader.

A grader is `fn(response, answer, choices, abs_tol) -> Grade`. `agreement` compares two graders' verdicts on the
same responses: how much of a gap to a paper's numbers is the grader, item by item.
"""

from __future__ import annotations

from collections.abc import Callable

from pgpo.rewards.scoring import VERIFY_TIMEOUT_S, Grade, GradeTimeout, grade_detailed, time_limit


def mathruler_grade(response: str, answer: str, choices: list[str] | None = None, abs_tol: float = 0.0) -> Grade:
    """mathruler's verdict on one response (choices and abs_tol are not part of its rules)."""
    from mathruler.grader import extract_boxed_content, grade_answer

    try:
        with time_limit(VERIFY_TIMEOUT_S):
            pred = extract_boxed_content(response or "")
            if pred is None or pred == "None" or not str(pred).strip():  # mathruler returns "None" without a box
                return Grade(0.0, "no_answer", None)
            try:
                ok = grade_answer(str(pred), str(answer))
            except Exception:  # sympy raises many kinds on malformed input: as pgpo's grader, a wrong answer
                return Grade(0.0, "error", str(pred))
            return Grade(float(bool(ok)), "ok", str(pred))
    except GradeTimeout:
        return Grade(0.0, "timeout", None)


GRADERS: dict[str, Callable[..., Grade]] = {"pgpo": grade_detailed, "mathruler": mathruler_grade}


def get_grader(name: str) -> Callable[..., Grade]:
    if name not in GRADERS:
        raise ValueError(f"unknown grader {name!r}; known: {sorted(GRADERS)}")
    return GRADERS[name]


def agreement(rows: list[dict], first: str = "pgpo", second: str = "mathruler", abs_tol: float = 0.0) -> dict:
    """Both graders on every response of `rows` (samples-file rows: id, answer, choices, responses).
    Returns counts (both 1, both 0, only first, only second) and every disagreeing response."""
    a, b = get_grader(first), get_grader(second)
    counts = {"both_correct": 0, "both_wrong": 0, f"only_{first}": 0, f"only_{second}": 0}
    disagreements = []
    for row in rows:
        choices = list(row.get("choices") or []) or None
        for i, response in enumerate(row["responses"]):
            ga = a(response, str(row["answer"]), choices, abs_tol)
            gb = b(response, str(row["answer"]), choices, abs_tol)
            if ga.score == gb.score:
                counts["both_correct" if ga.score else "both_wrong"] += 1
                continue
            counts[f"only_{first}" if ga.score else f"only_{second}"] += 1
            disagreements.append({"id": row["id"], "response": i, "answer": str(row["answer"]),
                                  f"{first}_extracted": ga.extracted, f"{second}_extracted": gb.extracted,
                                  first: ga.score, second: gb.score})
    total = sum(counts.values())
    return {"graders": [first, second], "responses": total, "counts": counts,
            "agreement_rate": (counts["both_correct"] + counts["both_wrong"]) / total if total else None,
            "disagreements": disagreements}
