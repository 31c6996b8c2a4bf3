"""Score: re-grade logged samples with pgpo.rewards.scoring (CPU, no model) and write one result JSON per benchmark.

avg@k = mean over questions of the per-question mean over its k samples; every per-question entry also keeps its
k sample scores in sample order (`samples`: variance components need them; older results lack them). Reported with the standard error over
questions and a bootstrap 95% interval (questions resampled). Every sample is accounted for: graded ok,
no \\boxed{} answer, verifier timeout, verifier error, or generation failed (the last three score 0 and are
counted); a question whose gold answer cannot be graded is listed and left out of the mean, never guessed.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from pgpo.data.datasets import DataError, sha256_file
from pgpo.evaluation.docs import FAILED_PREFIX
from pgpo.rewards.graders import agreement, get_grader
from pgpo.records.stages import (META_SUFFIX, read_samples_meta, write_eval_result, write_eval_summary)
from pgpo.records.stages import summary_path as default_summary
from pgpo.rewards.scoring import choice_letter
from pgpo.stats.pass_at_k import majority, pass_at
from pgpo.util.atomic import write_atomic
from pgpo.util.errors import listed


def bootstrap_ci(values: np.ndarray, samples: int, seed: int, chunk: int = 1000) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `values` over `samples` resamples with replacement."""
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, samples, chunk):
        idx = rng.integers(0, len(values), size=(min(chunk, samples - start), len(values)))
        means.append(values[idx].mean(axis=1))
    lo, hi = np.percentile(np.concatenate(means), [2.5, 97.5])
    return float(lo), float(hi)


def read_samples(path: Path, k: int) -> list[dict]:
    """Rows of a samples file, validated; DataError listing every bad row as file:row: field: problem."""
    rows, problems, seen = [], [], {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: not valid JSON ({e.msg})")
            continue
        problems += [f"{path}:{n}: field '{f}' is missing" for f in ("id", "answer", "responses") if f not in row]
        responses, choices = row.get("responses"), row.get("choices") or []
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            problems.append(f"{path}:{n}: field 'responses' must be a list of strings")
        elif len(responses) != k:
            problems.append(f"{path}:{n}: field 'responses' has {len(responses)} samples, expected k={k}")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            problems.append(f"{path}:{n}: field 'choices' must be a list of strings")
        if "id" in row and row["id"] in seen:
            problems.append(f"{path}:{n}: field 'id' {row['id']!r} repeats row {seen[row['id']]}")
        seen.setdefault(row.get("id"), n)
        rows.append(row)
    if problems:
        raise DataError(listed(f"{path}: {len(problems)} bad row(s); regenerate the samples (`pgpo evaluate "
                               "--overwrite`) or fix the rows named below:", problems))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows


def grade_samples(row: dict, counts: Counter, abs_tol: float = 0.0, grader: str = "pgpo",
                  answers: list | None = None) -> list[float]:
    """The grade of each of one question's responses, in sample order (with the named grader, pgpo.rewards.graders; a
    failed generation scores 0); counts each status. `answers`, when given, receives each response's extracted
    answer (None: none), in the same order."""
    grade_detailed = get_grader(grader)
    choices = list(row.get("choices") or []) or None
    scores = []
    for response in row["responses"]:
        if response.startswith(FAILED_PREFIX):
            counts["generation_failed"] += 1
            scores.append(0.0)
            if answers is not None:
                answers.append(None)
            continue
        g = grade_detailed(response, str(row["answer"]), choices, abs_tol)
        counts[g.status] += 1
        scores.append(float(g.score))
        if answers is not None:
            answers.append(g.extracted)
    return scores


def vote_keys(answers: list, choices: list | None, grader: str, abs_tol: float) -> list:
    """Each extracted answer's vote: equal to the first earlier answer the grader accepts as the same answer
    ('0.5' and '\\frac{1}{2}', 'B' and '(b)'), else its own; None stays None (no vote)."""
    grade_detailed = get_grader(grader)
    reps: list[str] = []
    keys = []
    for a in answers:
        if a is None:
            keys.append(None)
            continue
        same = next((r for r in reps if r == a or _same_answer(grade_detailed, a, r, choices, abs_tol)), None)
        if same is None:
            reps.append(a)
        keys.append(same if same is not None else a)
    return keys


def _same_answer(grade_detailed, answer: str, other: str, choices: list | None, abs_tol: float) -> bool:
    """`answer` graded against `other` as if it were the gold answer; an `other` that cannot be a gold answer (a
    multiple-choice row's answer naming no option, e.g. '7' of ['left bar', 'right bar']) matches only itself."""
    try:
        return grade_detailed(f"\\boxed{{{answer}}}", other, choices, abs_tol).score >= 1.0
    except ValueError:
        return False


def score_benchmark(samples_path: str | Path, bootstrap_samples: int = 10000, seed: int = 0,
                    grader: str = "pgpo") -> dict:
    """Grade one samples file (and its .meta.json); returns the result record."""
    from pgpo.util.provenance import code_version

    path = Path(samples_path)
    meta_path = path.with_suffix(META_SUFFIX)
    meta = read_samples_meta(path).as_dict()
    k = int(meta["sampling"]["samples"])
    rows = read_samples(path, k)
    samples_sha = sha256_file(path)
    counts: Counter = Counter()
    per_question, invalid, failed = [], [], []
    grading = dict(meta.get("grading") or {})
    unknown = sorted(set(grading) - {"abs_tol"})
    if unknown:
        raise DataError(f"{meta_path}: unknown grading rule(s) {unknown} (known: abs_tol)")
    abs_tol = float(grading.get("abs_tol", 0.0))
    for row in rows:
        choices = list(row.get("choices") or [])
        if choices and choice_letter(str(row["answer"]), choices) is None:  # a data problem: listed, not scored
            invalid.append({"id": row["id"], "problem": f"gold answer {row['answer']!r} names none of {choices}"})
            continue
        row_counts: Counter = Counter()
        # the per-sample scores too: the power planner separates sampling from question variance with them
        answers: list = []
        scores = grade_samples(row, row_counts, abs_tol, grader, answers)
        per_question.append({"id": row["id"], "mean": sum(scores) / len(scores), "samples": scores,
                             "pass_at_k": pass_at(scores, len(scores)),
                             "maj_at_k": majority(vote_keys(answers, choices or None, grader, abs_tol), scores)})
        counts.update(row_counts)
        if row_counts["generation_failed"]:
            failed.append(row["id"])
    if not per_question:
        raise DataError(f"{path}: no question could be graded ({len(invalid)} with invalid gold answers)")
    values = np.array([q["mean"] for q in per_question])
    n = len(values)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    lo, hi = bootstrap_ci(values, bootstrap_samples, seed)
    lmms_eval_avg = (meta.get("lmms_eval") or {}).get("avg_at_k")
    views = {}  # pass@k and maj@k beside avg@k (the paper's metric): the same samples, other questions asked
    for view in ("pass_at_k", "maj_at_k"):
        v = np.array([q[view] for q in per_question])
        views[view] = {"mean": float(v.mean()), "ci95_bootstrap": list(bootstrap_ci(v, bootstrap_samples, seed))}
    result = {
        "benchmark": meta["benchmark"], "avg_at_k": float(values.mean()), "k": k, "n_questions": n,
        "n_samples": n * k, "standard_error": se, "ci95_bootstrap": [lo, hi], **views,
        "counts": {s: counts.get(s, 0) for s in ("ok", "no_answer", "timeout", "error", "generation_failed")},
        "n_failed": counts.get("generation_failed", 0), "n_timeout": counts.get("timeout", 0),
        "failed_question_ids": failed, "invalid_gold": invalid,
        "lmms_eval_avg_at_k": lmms_eval_avg,
        # lmms-eval's in-run cross-check grades with the default rules: not comparable under a benchmark's own rule
        "agrees_with_lmms_eval": None if lmms_eval_avg is None or invalid or abs_tol or grader != "pgpo"
        else bool(abs(lmms_eval_avg - values.mean()) < 1e-9),
        "checkpoint": meta["checkpoint"], "checkpoint_hash": meta["checkpoint_hash"],
        "samples_sha256": samples_sha, "samples_changed_since_generation": samples_sha != meta["samples_sha256"],
        "per_question": per_question,
        "scoring": {"grader": grader, "grading_rule": grading, "bootstrap_samples": bootstrap_samples,
                    "seed": seed,
                    "code_version": code_version()},
        "expected_questions": meta.get("expected_questions"),
        "generation": {key: v for key, v in meta.items() if key != "benchmark"},
    }
    if failed or invalid or counts.get("timeout"):
        print(f"pgpo score: {meta['benchmark']}: {counts.get('generation_failed', 0)} failed generations, "
              f"{counts.get('timeout', 0)} verifier timeouts, {len(invalid)} invalid gold answers "
              f"(listed in {path.parent.parent / (meta['benchmark'] + '.json')})", file=sys.stderr)
    if result["samples_changed_since_generation"]:
        print(f"pgpo score: warning: {path} differs from the file generation wrote (sha256 in {meta_path.name})",
              file=sys.stderr)
    return result


def warn_missing(run_dir: Path, files: list[Path]) -> list[str]:
    """The benchmarks the run's evaluation(s) asked for (their meta files' `requested_benchmarks`) that have no
    finished samples, printed as a warning: a summary of a killed evaluation covers only what it finished."""
    requested: dict[str, None] = {}
    for f in files:
        try:
            requested.update(dict.fromkeys(read_samples_meta(f).raw.get("requested_benchmarks") or []))
        except (FileNotFoundError, DataError):
            continue  # score_benchmark names the broken meta file
    missing = [b for b in requested if not (run_dir / "samples" / f"{b}.jsonl").is_file()
               or not (run_dir / "samples" / f"{b}{META_SUFFIX}").is_file()]
    if missing:
        print(f"pgpo score: warning: {run_dir}: the summary covers {len(requested) - len(missing)} of the "
              f"{len(requested)} benchmarks the evaluation asked for; no finished samples of {missing} (finish "
              f"them with the same `pgpo evaluate ... --resume`)", file=sys.stderr, flush=True)
    return missing


def score_run(run_dir: str | Path, benchmarks: list[str] | None = None, bootstrap_samples: int = 10000,
              seed: int = 0, summary_path: str | Path | None = None, grader: str = "pgpo") -> dict:
    """Score every samples file of a run (or the named ones); write <run>/<benchmark>.json and a summary
    (<run>/summary.json unless summary_path: parallel jobs scoring parts of one run each write their own).
    Another grader writes <run>/<benchmark>.<grader>.json, summary.<grader>.json, and the agreement of the two
    graders on every response: <run>/agreement/<benchmark>.<grader>.json (counts + each disagreeing item)."""
    get_grader(grader)  # an unknown name fails before any file is read
    suffix = "" if grader == "pgpo" else f".{grader}"
    run_dir = Path(run_dir)
    files = sorted((run_dir / "samples").glob("*.jsonl"))
    if benchmarks:
        files = [run_dir / "samples" / f"{b}.jsonl" for b in benchmarks]
    missing = [str(f) for f in files if not f.exists()]
    if missing or not files:
        raise DataError(f"no samples to score: {missing or str(run_dir / 'samples')}; run `pgpo evaluate` first")
    if not benchmarks:
        warn_missing(run_dir, files)
    summary = {}
    for f in files:
        result = score_benchmark(f, bootstrap_samples, seed, grader)
        write_eval_result(run_dir, result, grader)
        if grader != "pgpo":
            meta = read_samples_meta(f)
            report = agreement(read_samples(f, meta.k), "pgpo", grader, float(meta.grading.get("abs_tol", 0.0)))
            (run_dir / "agreement").mkdir(exist_ok=True)
            write_atomic((run_dir / "agreement" / f"{result['benchmark']}{suffix}.json"), json.dumps(report, indent=2))
        summary[result["benchmark"]] = {key: result[key] for key in (
            "avg_at_k", "k", "n_questions", "standard_error", "ci95_bootstrap", "n_failed", "n_timeout")}
    from pgpo.evaluation.benchmarks import headline

    return write_eval_summary(summary_path or default_summary(run_dir, grader=grader), summary, headline(list(summary)))
