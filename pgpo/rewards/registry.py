"""Rewards as registered functions (issue 25): a recipe lists the rewards it trains on and their weights, a user
adds one from their own module (`rewards: {"my_pkg.rewards:brevity": {weight: 0.1}}`) without editing the project.

A reward is ``fn(inputs: RewardInputs, params) -> list[float]``, one value per completion; `params` is an instance of
its registered parameter dataclass (None without one; a user function named `module:function` that is not
registered gets its YAML `params` as a dict). The default, `accuracy` 0.9 + `format` 0.1, is the paper's and
gives TRL the same two functions under the same names as before (metrics `rewards/accuracy_reward/mean`, ...).
`accuracy` is the evaluation grader itself (pgpo.rewards.scoring.grade): training and evaluation cannot disagree.

What a broken reward does (NaN, a list of the wrong length, an exception): its values for that batch become NaN,
`faults/reward_errors/<name>` counts the completions, and the trainer's NaN rule takes their groups' advantage to
0 (pgpo.training.trainer.check_rewards): never a crash hours in, never a silently scored number.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

from pgpo.config.yamlconf import ConfigError
from pgpo.methods.registry import Entry, Registry
from pgpo.rewards import scoring

REWARDS: Registry = Registry("reward", stats_namespace="rewards")
DEFAULT = {"accuracy": {"weight": 0.9}, "format": {"weight": 0.1}}
"""The paper's reward: 0.9 x accuracy + 0.1 x format."""


@dataclass(frozen=True)
class RewardInputs:
    """What a reward sees of one batch of completions (B = completions)."""

    completions: list[str]
    """The generated texts [B]."""
    answer: list[str]
    """Gold answers [B] (the training row's `answer`)."""
    choices: list[list[str] | None]
    """Options of multiple-choice rows [B] (None for free-form)."""
    extra: dict[str, list[Any]]
    """Every other column of the training rows TRL passes (e.g. `id`), [B] each."""


@REWARDS.register("accuracy")
def accuracy(inputs: RewardInputs, params: None) -> list[float]:
    """1 when the last \\boxed{} answer grades correct (the evaluation grader, pgpo.rewards.scoring.grade)."""
    return [scoring.grade(t, a, c) for t, a, c in zip(inputs.completions, inputs.answer, inputs.choices)]


@REWARDS.register("format")
def format_(inputs: RewardInputs, params: None) -> list[float]:
    """1 for <think>...</think> then a \\boxed{} answer (pgpo.rewards.scoring.format_ok)."""
    return [scoring.format_ok(t) for t in inputs.completions]


@dataclass(frozen=True)
class RewardSpec:
    """One reward of a recipe, resolved: its entry, parameters and weight."""

    name: str
    entry: Entry
    params: Any
    weight: float


def resolve(rewards: dict[str, dict], where: str) -> list[RewardSpec]:
    """The recipe's `rewards:` mapping (name or `module:function` -> {weight, params}) resolved and validated, in
    order; every problem a ConfigError naming the reward, before any model loads."""
    if isinstance(rewards, dict):  # `name: null` drops a reward a recipe layer below listed
        rewards = {name: spec for name, spec in rewards.items() if spec is not None}
    if not isinstance(rewards, dict) or not rewards:
        raise ConfigError(f"{where}: rewards must be a non-empty mapping of reward -> {{weight, params}}")
    specs = []
    for name, spec in rewards.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: rewards.{name} must be a mapping {{weight, params}}, got {spec!r}")
        spec = dict(spec)
        unknown = sorted(set(spec) - {"weight", "params"})
        if unknown:
            raise ConfigError(f"{where}: rewards.{name}: unknown key(s) {unknown}; a reward takes weight and params")
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"{where}: rewards.{name}.weight must be a finite number, got {weight!r}")
        entry = _entry(name, where)
        try:
            params = entry.make_params(spec.get("params"), f"{where}: rewards.") if entry.params or \
                not _is_user(name) else dict(spec.get("params") or {})
        except ValueError as e:
            raise ConfigError(str(e)) from None
        specs.append(RewardSpec(name, entry, params, float(weight)))
    labels = [label(s.name) for s in specs]
    clash = sorted({n for n in labels if labels.count(n) > 1})
    if clash:  # TRL names each reward's metrics by its function's name: two would merge into one curve
        raise ConfigError(f"{where}: rewards: {[s.name for s in specs if label(s.name) in clash]} would all log as "
                          f"rewards/{clash[0]}_reward/...; rename one of the functions")
    return specs


def label(name: str) -> str:
    """A reward's name in TRL's metrics (`rewards/<label>_reward/mean`): the function's name."""
    return name.rsplit(":", 1)[-1].rstrip("_")


def _is_user(name: str) -> bool:
    return ":" in name


def _entry(name: str, where: str) -> Entry:
    if not _is_user(name):
        try:
            return REWARDS.get(name)
        except KeyError:
            close = difflib.get_close_matches(name, REWARDS.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: rewards: unknown reward {name!r}; {hint}known: {REWARDS.names()}, or "
                              "'module:function' for one of your own") from None
    module, _, fn_name = name.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{where}: rewards: cannot import {module!r} for reward {name!r} ({e}); is it on "
                          "PYTHONPATH?") from None
    except Exception as e:  # noqa: BLE001 - a user's module that fails to import (SyntaxError, ...): one line
        raise ConfigError(f"{where}: rewards: importing {module!r} for reward {name!r} failed: "
                          f"{type(e).__name__}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{where}: rewards: {module!r} has no function {fn_name!r}")
    try:  # a TRL-style fn(completions, **kw) would fail on every batch, each group neutralised, hours in
        inspect.signature(fn).bind(RewardInputs([], [], [], {}), None)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: rewards: {name} must take (inputs, params): "
                          f"def {fn_name}(inputs: RewardInputs, params) -> list[float]") from None
    registered = [REWARDS.get(n) for n in REWARDS.names() if REWARDS.get(n).fn is fn]
    return registered[0] if registered else Entry(name, fn, None, False, stats_namespace="rewards")


def trl_reward(spec: RewardSpec, errors: dict[str, int]):
    """The TRL reward function of a spec: named `<name>_reward` (TRL's metric `rewards/<name>_reward/mean`), values
    NaN where the reward broke (counted in `errors[<name>]`)."""
    name = label(spec.name)

    def reward(prompts=None, completions=None, answer=None, choices=None, **extra):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        n = len(texts)
        inputs = RewardInputs(texts, list(answer or [""] * n), list(choices or [None] * n),
                              {k: v for k, v in extra.items() if isinstance(v, list) and len(v) == n})
        try:
            values = spec.entry.fn(inputs, spec.params)
            values = [float(v) if v is not None else math.nan for v in values]
            if len(values) != n:
                raise ValueError(f"returned {len(values)} values for {n} completions")
        except Exception:  # noqa: BLE001 (a user's reward: counted and neutralised, the step goes on)
            errors[name] = errors.get(name, 0) + n
            return [math.nan] * n
        bad = sum(not math.isfinite(v) for v in values)
        if bad:
            errors[name] = errors.get(name, 0) + bad
        return [v if math.isfinite(v) else math.nan for v in values]

    reward.__name__ = f"{name}_reward"
    return reward
