"""Two graders on the same samples: pgpo's (the training reward) and mathruler (EasyR1's / PAPO's evaluation).

The variant matrix uses golds of real rows (tests/fixtures/realdata, sources and licences in its README) and
states, per answer variant, what each grader gives; mathruler's column is its behaviour as of mathruler 0.1.0, so
a change in either grader shows up here as a changed cell, with the gap it makes to the paper's numbers.
"""

import json

import pytest

from pgpo.rewards.graders import agreement, get_grader, mathruler_grade
from pgpo.rewards.scoring import grade_detailed


def boxed(x):
    return f"<think>...</think>\\boxed{{{x}}}"


# benchmark, gold (as the real row publishes it), choices, response answer, pgpo grade, mathruler grade
MATRIX = [
    ("mmk12", "$$105^{ \\circ }$$", None, "105", 1.0, 0.0),  # pgpo cleans the published gold first
    ("mmk12", "$$105^{ \\circ }$$", None, "105^\\circ", 1.0, 0.0),
    ("mmk12", "$$105^{ \\circ }$$", None, "104", 0.0, 0.0),
    ("mmk12", "B", None, "b", 1.0, 1.0),
    ("mathvision", "7685413092", None, "7685413092", 1.0, 1.0),
    ("mathvision", "7685413092", None, "7685413000", 0.0, 0.0),
    ("mathvision", "C", ["1", "2", "3", "4", "5"], "3", 1.0, 0.0),  # the option's text: only pgpo knows options
    ("mathvision", "C", ["1", "2", "3", "4", "5"], "C", 1.0, 1.0),
    ("logicvista", "A, C", None, "(A), (C)", 1.0, 0.0),
    ("logicvista", "A, C", None, "A, C", 1.0, 1.0),
    ("dynamath", "2.0944", None, "2.0944", 1.0, 1.0),
    ("dynamath", "2.0944", None, "\\frac{2\\pi}{3}", 0.0, 0.0),  # without DynaMath's abs_tol (pgpo score applies it)
    ("geo3k", "\\frac{1}{2}", None, "0.5", 1.0, 1.0),
    ("mathverse", "D", None, "D", 1.0, 1.0),
    ("mmmu_pro", "B", ["A", "B", "Not enough information"], "B", 1.0, 1.0),
]


@pytest.mark.parametrize("bench, gold, choices, answer, pgpo, mathruler", MATRIX)
def test_variant_matrix(bench, gold, choices, answer, pgpo, mathruler):
    assert grade_detailed(boxed(answer), gold, choices).score == pgpo
    assert mathruler_grade(boxed(answer), gold, choices).score == mathruler


def test_mathruler_statuses_and_unknown_grader():
    assert mathruler_grade("no box here", "3").status == "no_answer"
    assert mathruler_grade(boxed("3"), "3").status == "ok"
    with pytest.raises(ValueError, match="unknown grader 'judge'"):
        get_grader("judge")


def test_agreement_counts_and_lists_every_disagreement():
    rows = [{"id": f"q{i}", "answer": gold, "choices": list(choices or []), "responses": [boxed(answer)]}
            for i, (_, gold, choices, answer, _, _) in enumerate(MATRIX)]
    report = agreement(rows)
    disagree = sum(p != m for *_, p, m in MATRIX)
    assert report["counts"]["only_pgpo"] == disagree and report["counts"]["only_mathruler"] == 0
    assert report["responses"] == len(MATRIX) and len(report["disagreements"]) == disagree
    assert {d["id"] for d in report["disagreements"]} == {f"q{i}" for i, (*_, p, m) in enumerate(MATRIX) if p != m}


def test_pgpo_score_with_mathruler_writes_its_scores_and_the_agreement(tmp_path):
    from pgpo.cli import main
    from pgpo.data.datasets import sha256_file

    rows = [{"doc_id": i, "id": f"q{i}", "question": "?", "answer": gold, "choices": list(choices or []),
             "responses": [boxed(answer), "no box"]} for i, (_, gold, choices, answer, _, _) in enumerate(MATRIX)]
    samples = tmp_path / "samples" / "mix.jsonl"
    samples.parent.mkdir()
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples.with_suffix(".meta.json").write_text(json.dumps({
        "benchmark": "mix", "sampling": {"samples": 2}, "checkpoint": "c", "checkpoint_hash": "h",
        "samples_sha256": sha256_file(samples), "lmms_eval": {"avg_at_k": None}}))
    main(["score", "--run", str(tmp_path), "--bootstrap-samples", "100"])
    main(["score", "--run", str(tmp_path), "--bootstrap-samples", "100", "--grader", "mathruler"])
    ours, theirs = (json.loads((tmp_path / name).read_text()) for name in ("mix.json", "mix.mathruler.json"))
    assert (ours["scoring"]["grader"], theirs["scoring"]["grader"]) == ("pgpo", "mathruler")
    assert ours["avg_at_k"] == pytest.approx(sum(p for *_, p, _ in MATRIX) / len(MATRIX) / 2)
    assert theirs["avg_at_k"] == pytest.approx(sum(m for *_, m in MATRIX) / len(MATRIX) / 2)
    report = json.loads((tmp_path / "agreement/mix.mathruler.json").read_text())
    assert report["counts"]["only_pgpo"] == sum(p != m for *_, p, m in MATRIX)
    assert report["counts"]["both_wrong"] >= len(MATRIX)  # every "no box" response
    assert (tmp_path / "summary.json").exists() and (tmp_path / "summary.mathruler.json").exists()
