"""No LLM judge anywhere: refuse to evaluate when one is configured, and reject any metric we did not define."""

from __future__ import annotations

import os

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


def check_metrics(task: str, metrics: dict) -> None:
    """Raise unless every metric lmms-eval reported for `task` is ours (avg_at_k and its standard errors)."""
    names = {k.split(",")[0] for k in metrics if k != "alias"}
    foreign = sorted(n for n in names if n != METRIC and not n.startswith(f"{METRIC}_stderr"))
    if foreign:
        raise JudgeConfigured(f"{task}: lmms-eval reported metric(s) {foreign} that pgpo does not define "
                              f"(a judge-type or built-in metric); only {METRIC!r} is allowed")
