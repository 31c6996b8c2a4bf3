"""Generate the tiny default's data: RL training set, warm-start set and one evaluation suite per task."""

from __future__ import annotations

from pathlib import Path

from pgpo.data.datasets import write_manifest, write_split
from pgpo.util.progress import progress_bar
from pgpo.tiny.synthetic import TASKS, make_item


def make_data(out: str | Path, seed: int = 0, train_per_task: int = 500, warmstart_per_task: int = 1500,
              eval_per_task: int = 50) -> Path:
    """Write train.jsonl, warmstart.jsonl and suite_<task>.jsonl (+ images, MANIFEST.json) under out."""
    out = Path(out)
    plan = [("train", "train", list(TASKS), train_per_task),
            ("warmstart", "warmstart", list(TASKS), warmstart_per_task)]
    plan += [(f"suite_{t}", "eval", [t], eval_per_task) for t in TASKS]
    total = sum(len(tasks) * n for _, _, tasks, n in plan)
    with progress_bar(total, "make-data", "item") as bar:
        for name, split, tasks, n in plan:
            items = []
            for i in range(n):  # interleave tasks so any prefix of a split is balanced
                for t in tasks:
                    items.append(make_item(t, seed, split, i))
                    bar.update()
            write_split(items, out, name)
    write_manifest(out, {"seed": seed, "train_per_task": train_per_task, "warmstart_per_task": warmstart_per_task,
                         "eval_per_task": eval_per_task, "tasks": list(TASKS)})
    return out
