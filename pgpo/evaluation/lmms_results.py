"""<out>/results.json: lmms-eval's own aggregated results file, for users who look for lmms-eval's output.

`lmms-eval --output_path DIR` writes DIR/<model>/<date>_results.json through its EvaluationTracker
(save_results_aggregated). `pgpo evaluate` calls lmms-eval's simple_evaluate in process, one benchmark at a time,
so that writer never runs by itself: here it is run on each benchmark's results (into a private staging folder,
since it writes in place under a date-stamped name), and its file is merged into <out>/results.json atomically.
The content is lmms-eval's, not rebuilt by us: the per-task sections (`results`, `configs`, `versions`, `n-shot`,
`higher_is_better`, `n-samples`, ...) hold one entry per benchmark of the run directory; the run-level fields
(`config`, `date`, `model_name`, timings, ...) are those of the last benchmark written.

The metric is lmms-eval's in-run `avg_at_k` (pgpo.evaluation.docs.process_results, the training grade); it equals
`pgpo score`'s avg@k wherever that result says `agrees_with_lmms_eval: true`. It can differ where pgpo's number
is not comparable by design: a benchmark's own grading rule (DynaMath's abs_tol) or invalid gold answers, which
`pgpo score` leaves out of the mean and lmms-eval scores 0.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pgpo.util.atomic import write_atomic
from pgpo.util.errors import DataError

NAME = "results.json"
# the sections of lmms-eval's results that are keyed by task (evaluator.evaluate's results_dict, plus the
# tracker's task_hashes): merged task by task, so the file of a run directory covers all its benchmarks
PER_TASK = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
            "task_hashes")


def cli_model_args(args: dict) -> str:
    """`args` as lmms-eval's --model_args string (k=v,...; a dict value as JSON, kept whole by its parser's split)."""
    def text(v):
        return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)

    return ",".join(f"{k}={text(v)}" for k, v in args.items() if v is not None)


def tracker(backend: str, args: dict):
    """lmms-eval's EvaluationTracker as its CLI sets it up (start timer, model name from --model_args).

    Not passed to simple_evaluate: given a model object, simple_evaluate records that object as `model_source`,
    and the tracker's dataclasses.asdict would deep-copy the whole model when saving. The CLI records the
    backend's name there, and so do we."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    t = EvaluationTracker()
    t.general_config_tracker.log_experiment_args(model_source=backend, model_args=cli_model_args(args),
                                                 system_instruction=None, chat_template=None,
                                                 fewshot_as_multiturn=False)
    return t


def merge(old: dict, new: dict) -> dict:
    """`new` (one benchmark's lmms-eval results) over `old`: per-task sections merged by task, the rest replaced."""
    merged = {**old, **new}
    for key in PER_TASK:
        if key in old or key in new:
            merged[key] = {**(old.get(key) or {}), **(new.get(key) or {})}
    return merged


def save(evaluation_tracker, results: dict, out_dir: str | Path) -> Path:
    """Run lmms-eval's writer on one simple_evaluate result and merge its file into <out_dir>/results.json."""
    from filelock import FileLock

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    aggregated = {k: v for k, v in results.items() if k != "samples"}  # the CLI pops the samples the same way
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".lmms_eval-") as staging:
        evaluation_tracker.output_path = staging
        evaluation_tracker.save_results_aggregated(aggregated, results.get("samples") or {}, results["date"])
        written = sorted(Path(staging).rglob("*_results.json"))
        if not written:  # lmms-eval logs its writer's failure as a warning and goes on: ours is an error
            raise RuntimeError(f"lmms-eval's EvaluationTracker wrote no results file for {sorted(results['results'])}"
                               f" (its log says why); the samples in {out_dir}/samples are unaffected")
        new = json.loads(written[0].read_text())
    path = out_dir / NAME
    # evaluation shards of one checkpoint share out_dir and finish concurrently: read-merge-write under a lock
    with FileLock(str(out_dir / f".{NAME}.lock")):
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); delete it and evaluate again "
                            f"(lmms-eval's results file of this run directory, written by `pgpo evaluate`)") from None
        write_atomic(path, json.dumps(merge(old, new), indent=2, ensure_ascii=False))
    return path
