"""Files cut at random points (issue 23, item 1).

Each kind of file the quick workflow writes and something reads again is cut at a random byte in a copy of the
finished tree, and the command that reads it next is run again: the workflow job that consumes it, with the exact
command line Snakemake ran (taken from its log), or the user command that does (`pgpo status`, `pgpo power`). The
command either recovers (exit 0, and what it writes again equals what the intact run wrote) or stops with exactly
one line `pgpo <command>: error: <the cut file>...` and no traceback.

Left out, said here: run_config.json of a finished run (nothing reads it: run.json stands for it); outputs nothing reads (tables, figures, reports, logs, benchmarks/*.tsv: their rule writes them
again); a checkpoint's files, which tests/training/test_faults.py cuts one by one (the resume falls back to the
previous complete checkpoint). The cut points come from a seeded generator: PGPO_CUT_SEED explores other points.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_run import copy_tree

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("PGPO_CUT_SEED", "0"))
BASE_EVAL = "--out results/quick/eval/tiny/base "
GRPO_EVAL = "--out results/quick/eval/tiny/grpo-s0 "
GRPO_TRAIN = "--out results/quick/runs/tiny/grpo-s0 "
TRACK = 'track --spec \'{"root": "results/quick", "target": "table1"'
TABLE = 'table --spec \'{"root": "results/quick", "target": "table1"'

# kind -> (file under results/quick, the command that reads it next, folders removed first (the job's outputs, so
#          it does its work again), "error" or "recover")
CASES = {
    "data manifest": ("data/MANIFEST.json", BASE_EVAL, ["eval/tiny/base"], "error"),
    "training split": ("data/train.jsonl", GRPO_TRAIN, ["runs/tiny/grpo-s0"], "error"),
    "training image": ("data/images/train/000000.png", GRPO_TRAIN, ["runs/tiny/grpo-s0"], "error"),
    "evaluation suite": ("data/suite_count.jsonl", BASE_EVAL, [], "error"),
    "built model weights": ("model/base/model.safetensors", "pgpo warm-start ", ["model/warmstart"], "error"),
    "warm-start weights": ("model/warmstart/model.safetensors", GRPO_TRAIN, ["runs/tiny/grpo-s0"], "error"),
    "warm-start record": ("model/warmstart/warmstart.json", TABLE, [], "error"),
    "run record": ("runs/tiny/grpo-s0/run.json", GRPO_TRAIN, [], "error"),
    "training metrics": ("runs/tiny/grpo-s0/metrics.jsonl", TRACK, [], "error"),
    "trained weights": ("runs/tiny/grpo-s0/final/model.safetensors", GRPO_EVAL, [], "error"),
    "samples": ("eval/tiny/grpo-s0/samples/tiny_count.jsonl", GRPO_EVAL, [], "recover"),
    "samples meta": ("eval/tiny/grpo-s0/samples/tiny_count.meta.json", GRPO_EVAL, [], "recover"),
    "scored benchmark": ("eval/tiny/grpo-s0/tiny_count.json", TABLE, [], "error"),
    "shard summary": ("eval/tiny/grpo-s0/shard-tiny.json", "status", [], "broken"),
    "tracking record": ("tracking/table1.json", TABLE, [], "error"),
    "MLflow store": ("mlflow/mlflow.db", TRACK, [], "either"),
    "paired view": ("table1.diff.json", "power", [], "error"),
}


def cut(path: Path, rng: random.Random) -> int:
    """Cut `path` at a random byte (a new file: the original may be a hard link); returns the new size."""
    data = path.read_bytes()
    n = rng.randrange(0, len(data))
    path.unlink()
    path.write_bytes(data[:n])
    return n


def command_for(reader: str, commands: list[str]) -> tuple[str, Path | None]:
    """(shell command, its log file or None: output on stdout/stderr)."""
    if reader == "status":
        return "pgpo status results/quick", None
    if reader == "power":
        return "pgpo power --target results/quick/table1 --difference 0.05", None
    found = [c for c in commands if reader in c]
    if not found and os.environ.get("PGPO_QUICK_TREE"):
        pytest.skip(f"{reader!r}: not in the given log")
    assert len(found) == 1, (reader, len(found))
    log = re.search(r"> (\S+) 2>&1\s*$", found[0])
    return found[0], Path(log.group(1)) if log else None


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_cut_file_is_recovered_or_named_in_one_line(kind, finished, tmp_path):
    work, commands = finished
    rel, reader, remove, expect = CASES[kind]
    root = copy_tree(work, tmp_path)
    path = root / "results/quick" / rel
    intact = path.read_bytes()
    for folder in remove:
        shutil.rmtree(root / "results/quick" / folder)
    size = cut(path, random.Random(f"{SEED}:{kind}"))
    command, log = command_for(reader, commands)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(command, shell=True, cwd=root, capture_output=True, text=True, env=env, timeout=600)
    output = proc.stdout + proc.stderr + ((root / log).read_text() if log and (root / log).exists() else "")
    where = f"cut at byte {size} of {len(intact)} (PGPO_CUT_SEED={SEED}); {command[:200]}\n{output[-3000:]}"
    assert "Traceback" not in output, where
    if proc.returncode == 0:
        assert expect in ("recover", "either", "broken"), where
        if expect == "broken":  # `pgpo status` lists the cut file's run as broken, naming it, and every other run
            assert "broken" in output and f"results/quick/{rel}" in output and "grpo-s1" in output, where
        elif rel.startswith("eval/"):  # regenerated: the samples the intact run wrote, byte for byte
            if rel.endswith(".jsonl"):
                assert path.read_bytes() == intact, where
            else:
                assert json.loads(path.read_text())["samples_sha256"] == json.loads(intact)["samples_sha256"], where
        return
    assert expect in ("error", "either"), where
    lines = output.splitlines()
    at = [i for i, line in enumerate(lines) if re.match(r"pgpo [a-z-]+: error: ", line)]
    assert len(at) == 1, where
    block = [lines[at[0]]]  # the error line, and the rows it lists, indented, under it
    block += [line for line in lines[at[0] + 1:] if line.startswith("  ")][:20]
    # named in full, or (a row's image) relative to its data folder
    assert any(name in "\n".join(block) for name in (f"results/quick/{rel}", str(path), "/".join(Path(rel).parts[-3:]))), where
