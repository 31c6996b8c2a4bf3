"""The recipe's `samples:` block: which rollouts are logged beside the curves (pgpo/training/samples.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pgpo.config.yamlconf import ConfigError


@dataclass
class RolloutSamplesConfig:
    """Rollouts written to <run>/samples.jsonl (and the tracker's samples/ tables) while training."""

    every: int = 10
    """Log samples at every N-th optimizer step (steps N, 2N, ...; 0: never)."""
    rollouts: int = 2
    """How many rollouts of a logged step: the first ones of process 0's batch (a group's members first)."""


def check_samples(samples: RolloutSamplesConfig, where: str) -> None:
    if samples.every < 0 or samples.rollouts < 0:
        raise ConfigError(f"{where}: samples.every and samples.rollouts must be >= 0 (0: no samples), got "
                          f"{samples.every} and {samples.rollouts}")
