"""The reward registry (pgpo/rewards/registry.py): the default is the paper's two functions under their old names,
a user's `module:function` reward resolves without editing the project, bad rewards are named before any model
loads, and a reward that breaks (exception, wrong length, NaN) yields NaN values and a count instead of a crash."""

import math
import sys
import textwrap

import pytest

from pgpo.config.yamlconf import ConfigError
from pgpo.rewards import scoring
from pgpo.rewards.registry import DEFAULT, REWARDS, resolve, trl_reward

COMPLETIONS = ["<think>two squares</think>\\boxed{2}", "no box here", "<think>x</think>\\boxed{B}"]
BATCH = {"completions": COMPLETIONS, "answer": ["2", "3", "B"], "choices": [None, None, ["one", "two"]]}


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's own, outside the package, on PYTHONPATH."""
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent('''
        def brevity(inputs, params):
            limit = params.get("limit", 10)
            return [1.0 if len(t) <= limit else 0.0 for t in inputs.completions]

        def broken(inputs, params):
            raise RuntimeError("bug in a user's reward")

        def short(inputs, params):
            return [1.0]

        def nan(inputs, params):
            return [float("nan")] + [1.0] * (len(inputs.completions) - 1)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_the_default_is_the_paper_s_reward_under_its_old_names():
    specs = resolve(DEFAULT, "recipe")
    assert [(s.name, s.weight) for s in specs] == [("accuracy", 0.9), ("format", 0.1)]
    errors = {}
    funcs = [trl_reward(s, errors) for s in specs]
    assert [f.__name__ for f in funcs] == [f.__name__ for f in scoring.REWARD_FUNCS]  # metric names unchanged
    for new, old in zip(funcs, scoring.REWARD_FUNCS):
        assert new(**BATCH) == old(**BATCH)  # bit for bit the functions the trainer used before
    assert funcs[0](**BATCH) == [1.0, 0.0, 1.0] and errors == {}


def test_a_user_reward_from_its_own_module_with_params(user_module):
    (spec,) = resolve({f"{user_module}:brevity": {"weight": 0.5, "params": {"limit": 12}}}, "recipe")
    reward = trl_reward(spec, {})
    assert reward.__name__ == "brevity_reward" and reward(**BATCH) == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("rewards, message", [
    ({"acuracy": {}}, "unknown reward 'acuracy'; did you mean 'accuracy'"),
    ({"no_such_module:f": {}}, "cannot import 'no_such_module'"),
    ({"accuracy": {"weight": float("inf")}}, "weight must be a finite number"),
    ({"accuracy": {"wieght": 1}}, "unknown key(s) ['wieght']"),
    ({"accuracy": {"params": {"x": 1}}}, "takes no parameters"),
    ({}, "non-empty mapping"),
])
def test_bad_rewards_are_named_before_any_model_loads(rewards, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        resolve(rewards, "recipe.yaml")


def test_a_missing_function_in_a_user_module_is_named(user_module):
    with pytest.raises(ConfigError, match="'my_rewards' has no function 'nope'"):
        resolve({f"{user_module}:nope": {}}, "recipe.yaml")


@pytest.mark.parametrize("fn, bad", [("broken", 3), ("short", 3), ("nan", 1)])
def test_a_reward_that_breaks_gives_nan_and_is_counted(user_module, fn, bad):
    errors = {}
    (spec,) = resolve({f"{user_module}:{fn}": {}}, "recipe")
    values = trl_reward(spec, errors)(**BATCH)
    assert sum(math.isnan(v) for v in values) == bad and errors == {fn: bad}


def test_registered_rewards_are_documented():
    assert REWARDS.names() == ["accuracy", "format"]
    assert all(REWARDS.get(n).fn.__doc__ for n in REWARDS.names())


def test_user_modules_that_cannot_work_are_named_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_mod.py").write_text("def f(inputs, params):\n    return [\n")
    (tmp_path / "trl_style.py").write_text("def score(completions, **kw):\n    return [0.0] * len(completions)\n")
    (tmp_path / "other.py").write_text("def format(inputs, params):\n    return [1.0] * len(inputs.completions)\n")
    with pytest.raises(ConfigError, match=r"importing 'broken_mod' for reward 'broken_mod:f' failed: SyntaxError"):
        resolve({"broken_mod:f": {}}, "r.yaml")
    with pytest.raises(ConfigError, match=r"trl_style:score must take \(inputs, params\)"):
        resolve({"trl_style:score": {}}, "r.yaml")
    # two rewards TRL would log under one name (its metrics are named by the function)
    with pytest.raises(ConfigError, match=r"\['format', 'other:format'\] would all log as rewards/format_reward"):
        resolve({"format": {"weight": 0.1}, "other:format": {"weight": 0.5}}, "r.yaml")
