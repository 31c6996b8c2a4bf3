"""No LLM judge anywhere: refuse to evaluate when one is configured, and reject any metric we did not define. And
the environment lmms-eval needs, checked before the model loads: a writable datasets cache."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pgpo.evaluation.docs import METRIC
from pgpo.util.errors import UserError

# Variables through which lmms-eval's judge-based tasks (lmms_eval/llm_judge, mathverse, mathvision, k12, ...)
# pick up a judge endpoint; any of them set means a judge could be called.
JUDGE_ENV = ("USE_LLM_JUDGE", "API_TYPE", "OPENAI_API_KEY", "OPENAI_API_URL", "OPENAI_BASE_URL", "AZURE_API_KEY",
             "AZURE_OPENAI_API_KEY", "AZURE_ENDPOINT", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
             "DASHSCOPE_API_KEY", "JUDGE_API_KEY", "JUDGE_BASE_URL", "JUDGE_MODEL_NAME", "LLM_JUDGE_URL",
             "AWS_BEARER_TOKEN_BEDROCK")


class JudgeConfigured(UserError, RuntimeError):
    """An LLM judge is configured or a judge-type metric was produced: the protocol is judge-free."""


def check_environment(environ=os.environ) -> None:
    """Raise if any judge variable is set (even empty strings are refused: unset them)."""
    found = sorted(k for k in JUDGE_ENV if k in environ)
    if found:
        raise JudgeConfigured(f"LLM-judge configuration found in the environment: {found}. The evaluation protocol "
                              f"is rule-based only; unset them (e.g. `env -u {found[0]} pgpo evaluate ...`).")


def datasets_cache_dir(environ=os.environ) -> Path:
    """The datasets cache lmms-eval's tasks write to (lmms_eval.api.task._resolve_hf_datasets_cache_dir, for a
    local file system): LMMS_EVAL_DATASETS_CACHE, else HF_DATASETS_CACHE, else $HF_HOME/datasets (HF_HOME defaults
    to ~/.cache/huggingface)."""
    def expand(p):
        return Path(os.path.expanduser(os.path.expandvars(p)))

    if environ.get("LMMS_EVAL_DATASETS_CACHE", "").strip():
        return expand(environ["LMMS_EVAL_DATASETS_CACHE"].strip())
    home = environ.get("HF_HOME", "~/.cache/huggingface")
    return expand(environ.get("HF_DATASETS_CACHE", os.path.join(home, "datasets")))


def check_cache_writable(environ=os.environ) -> Path:
    """UserError before the model loads if lmms-eval cannot write its datasets cache (an unwritable HOME: a
    read-only home on a cluster node). lmms-eval failed there with a raw OSError wrapped in tenacity's RetryError,
    naming neither the variable nor the fix."""
    import tempfile

    from pgpo.util.errors import NOT_WRITABLE

    cache = datasets_cache_dir(environ)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=cache).close()
    except OSError as e:
        if e.errno not in NOT_WRITABLE + (errno.ENOTDIR,):
            raise
        raise UserError(f"{cache}: lmms-eval's datasets cache is not writable ({e.strerror}: {e.filename}); set "
                        "LMMS_EVAL_DATASETS_CACHE (or HF_HOME) to a writable folder, e.g. "
                        "`LMMS_EVAL_DATASETS_CACHE=$TMPDIR/lmms-datasets pgpo evaluate ...`") from None
    return cache


def check_metrics(task: str, metrics: dict) -> None:
    """Raise unless every metric lmms-eval reported for `task` is ours (avg_at_k and its standard errors)."""
    names = {k.split(",")[0] for k in metrics if k != "alias"}
    foreign = sorted(n for n in names if n != METRIC and not n.startswith(f"{METRIC}_stderr"))
    if foreign:
        raise JudgeConfigured(f"{task}: lmms-eval reported metric(s) {foreign} that pgpo does not define "
                              f"(a judge-type or built-in metric); only {METRIC!r} is allowed")
