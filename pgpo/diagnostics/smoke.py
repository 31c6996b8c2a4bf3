"""Install smoke check: import and exercise every component the workflow runs, on this environment.

    python -m pgpo.diagnostics.smoke            (scripts/install.sh runs it; exit 1 on the first broken component)

Each check names the distribution it exercises. A failure prints that distribution and its installed version,
plus the distribution that owns the module that actually failed to import (a drifted transitive dependency such
as filelock 4.x under lmms-eval 0.7.3 is named, not hidden behind a generic traceback).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def owner_of(module: str) -> str | None:
    """'filelock._api' -> 'filelock 4.3.1' (the installed distribution providing the top-level module)."""
    top = module.split(".")[0]
    dists = metadata.packages_distributions().get(top)
    return f"{dists[0]} {version_of(dists[0])}" if dists else None


def check_torch() -> str:
    import torch
    import torchvision  # noqa: F401  (the CPU shim must make PyPI's torchvision importable)
    from transformers import Qwen2_5_VLProcessor  # noqa: F401

    x = torch.ones(2, 3, requires_grad=True)
    (x * 2).sum().backward()
    assert float(x.grad.sum()) == 12.0
    return f"torch {torch.__version__} (cuda: {torch.cuda.is_available()}), torchvision importable"


def check_trl() -> str:
    from pgpo.training import trainer  # noqa: F401  (the subclass and every private TRL touch point it relies on)

    return "GRPOTrainer and the pgpo subclass import"


def check_lmms_eval() -> str:
    from lmms_eval.evaluator import simple_evaluate  # noqa: F401  (filelock 4.x breaks this import)
    from lmms_eval.tasks import TaskManager

    from pgpo.evaluation.benchmarks import TASKS_DIR, all_benchmarks

    manager = TaskManager("ERROR", include_path=str(TASKS_DIR), include_defaults=False)
    want = {b.task for b in all_benchmarks().values()}
    missing = sorted(want - set(manager.all_tasks))
    assert want and not missing, f"pgpo_ tasks not found through --include_path {TASKS_DIR}: {missing}"
    return f"evaluator imports; {len(want)} pgpo_ tasks found through --include_path"


def check_evaluation() -> str:
    """A real `pgpo evaluate` (the function the command runs) through lmms-eval's simple_evaluate (tiny model, 2
    questions, 1 sample): some breakages only show when an evaluation runs (lmms-eval 0.7.3 imports filelock._api
    inside evaluate()). In this process, so that a failed import is attributed to its package."""
    import contextlib
    import io

    from pgpo.evaluation.run import evaluate_checkpoint
    from pgpo.records.stages import read_eval_result
    from pgpo.tiny.make_data import make_data
    from pgpo.tiny.model import build_tiny

    with tempfile.TemporaryDirectory() as work:
        model = build_tiny(Path(work) / "model")
        data = make_data(Path(work) / "data", seed=0, train_per_task=1, warmstart_per_task=1, eval_per_task=2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluate_checkpoint(str(model), REPO / "workflows/config/eval/tiny.yaml",
                                {"sampling": {"samples": 1}, "data": str(data), "limit": 2}, f"{work}/eval",
                                ["tiny_bars"])
        result = read_eval_result(Path(work, "eval"), "tiny_bars")
    assert result.n_questions == 2 and result.agrees_with_lmms_eval is True, result
    return f"pgpo evaluate ran lmms-eval on the tiny model (2 questions, avg@1 {result.avg_at_k:.2f})"


def check_pgpo_vlm() -> str:
    from lmms_eval.models import get_model

    from pgpo.evaluation.lmms_model import PGPOVisionLanguageModel

    cls = get_model("pgpo_vlm")
    assert cls is PGPOVisionLanguageModel, f"pgpo_vlm resolves to {cls}, not the project's class"
    return "pgpo_vlm resolves through the lmms_eval.models entry point"


def check_snakemake() -> str:
    import snakemake.api  # noqa: F401
    import snakemake_executor_plugin_slurm  # noqa: F401

    if not (REPO / "Snakefile").exists():
        return "imports (no Snakefile beside the package: workflow dry run skipped)"
    import subprocess

    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, "-m", "snakemake", "reproduce_table1", "-n", "--quiet", "rules", "-s",
               str(REPO / "Snakefile"), "-d", work, "--configfile", str(REPO / "workflows/config/quick.yaml")]
        done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"dry run of reproduce_table1 failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return "dry run of reproduce_table1 (quick profile) plans"


def check_mlflow() -> str:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as work:
        client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
        exp = client.create_experiment("smoke", artifact_location=Path(work, "artifacts").as_uri())
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "reward", 0.5, step=1)
        got = client.get_metric_history(run.info.run_id, "reward")
        assert [(m.step, m.value) for m in got] == [(1, 0.5)], got
    return "sqlite store: experiment, run and metric round-trip"


def check_deepspeed() -> str:
    """One real ZeRO-2 optimizer step of a Linear layer in this process (gloo, world size 1)."""
    import socket

    with socket.socket() as s:  # a free loopback port for the one-process process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    import deepspeed
    import torch
    from accelerate.utils import is_deepspeed_available

    assert is_deepspeed_available(), "accelerate does not see deepspeed"
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2},
              "optimizer": {"type": "AdamW", "params": {"lr": 0.1, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    engine.backward(engine(torch.ones(1, 4)).sum())
    engine.step()
    moved = float((model.weight.detach() - before).abs().sum())
    torch.distributed.destroy_process_group()
    assert moved > 0, "ZeRO-2 step left the weights unchanged"
    return f"one ZeRO-2 step on CPU moved the weights by {moved:.3f}"


def check_math_verify() -> str:
    from math_verify import parse, verify

    from pgpo.rewards.scoring import grade

    assert verify(parse("$\\frac{1}{2}$"), parse("$0.5$")), "math-verify: 1/2 != 0.5"
    assert grade("<think>x</think> \\boxed{\\frac{1}{2}}", "0.5") == 1.0, "pgpo.rewards.scoring.grade rejects 1/2 for 0.5"
    return "parse/verify and pgpo.rewards.scoring.grade agree on 1/2 = 0.5"


# (distribution whose version is reported, what it checks)
CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("torch", check_torch),
    ("trl", check_trl),
    ("lmms-eval", check_lmms_eval),
    ("lmms-eval", check_pgpo_vlm),
    ("lmms-eval", check_evaluation),
    ("snakemake", check_snakemake),
    ("mlflow", check_mlflow),
    ("deepspeed", check_deepspeed),
    ("math-verify", check_math_verify),
]


def run(checks=CHECKS, out=print) -> list[str]:
    """Run every check; returns the failure messages (empty: all components work)."""
    failures = []
    for dist, check in checks:
        start = time.time()
        try:
            detail = check()
            out(f"  ok   {dist} {version_of(dist)}: {detail} ({time.time() - start:.1f} s)")
        except Exception as e:  # noqa: BLE001  (every failure is reported, with the package that caused it)
            culprit = owner_of(e.name) if isinstance(e, ImportError) and e.name else None
            msg = f"{dist} {version_of(dist)} ({check.__name__}): {type(e).__name__}: {e}"
            if culprit and not culprit.startswith(dist + " "):
                msg += f" [failing module {e.name!r} is from {culprit}]"
            failures.append(msg)
            out(f"  FAIL {msg}")
            out("".join(traceback.format_exception(e)[-3:]).rstrip())
    return failures


def main() -> int:
    print("pgpo smoke check:")
    failures = run()
    if failures:
        print(f"pgpo smoke check FAILED ({len(failures)} of {len(CHECKS)}):\n  " + "\n  ".join(failures))
        return 1
    print(f"pgpo smoke check OK ({len(CHECKS)} components)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
