"""Controlled rewards for training tests, plugged in the way a user plugs in a reward of their own
(`rewards: {"signal_rewards:accuracy": ...}`, pgpo.rewards.registry): the untrained tiny model earns nothing, so
accuracy alternates 0/1 inside the groups of the chosen tasks instead (0 elsewhere) and format is 1 everywhere.
Every accuracy batch is appended to RECORD (tests clear it first)."""

RECORD: list[list[float]] = []


def accuracy(inputs, params):
    tasks = params.get("tasks", ["count"])  # None: every task
    values = [float(i % 2) if tasks is None or t in tasks else 0.0 for i, t in enumerate(inputs.extra["task"])]
    RECORD.append(values)
    return values


def format(inputs, params):  # the reward's name: TRL logs it as format_reward, as the real one
    return [1.0] * len(inputs.completions)


def signal(tasks=("count",)) -> dict:
    """The recipe's `rewards:` with these rewards at the paper's weights."""
    return {"signal_rewards:accuracy": {"weight": 0.9, "params": {"tasks": None if tasks is None else list(tasks)}},
            "signal_rewards:format": {"weight": 0.1}}


def zero(inputs, params):
    """Nothing right: accuracy 0 everywhere."""
    return [0.0] * len(inputs.completions)


def format_alternating(inputs, params):
    """Format 0/1 alternating inside the groups of params["tasks"], 1 elsewhere: a 0.1 spread at weight 0.1."""
    tasks = set(params.get("tasks", []))
    return [float(i % 2) if t in tasks else 1.0 for i, t in enumerate(inputs.extra["task"])]
