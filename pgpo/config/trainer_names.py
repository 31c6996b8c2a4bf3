"""Recipe values that name something of transformers' Trainer (an optimizer, a scheduler, a tracker): checked against
the installed transformers before the model loads, where the Trainer would otherwise refuse them (or accept and
diverge) after it has loaded."""

from __future__ import annotations

import difflib

from pgpo.config.yamlconf import ConfigError


def check_optimizer(o, where: str) -> None:
    """What the Trainer would refuse (or accept and diverge on) after the model has loaded, named before it loads."""
    from transformers.trainer_utils import (
        SchedulerType,  # names as the Trainer reads them (imported by training anyway)
    )
    from transformers.training_args import OptimizerNames

    if not (0 <= o.adam_beta1 < 1 and 0 <= o.adam_beta2 < 1) or not o.adam_epsilon > 0:
        raise ConfigError(f"{where}: optim.adam_beta1 and adam_beta2 must be in [0, 1) and adam_epsilon > 0, got "
                          f"{o.adam_beta1}, {o.adam_beta2}, {o.adam_epsilon}")
    for name, value, known in (("optimizer", o.optimizer, OptimizerNames), ("scheduler", o.scheduler, SchedulerType)):
        names = [k.value for k in known]
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: optim.{name} {value!r} is not a Trainer {name}; {hint}known: {names}")


def check_report_to(report_to: list, where: str) -> None:
    """Every tracker named is one transformers knows and is installed (its callback would fail after the model
    loads otherwise); "mlflow" is the workflow's own store already."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    if not isinstance(report_to, list) or not all(isinstance(r, str) for r in report_to):
        raise ConfigError(f"{where}: report_to must be a list of tracker names, got {report_to!r}")
    available = set(get_available_reporting_integrations())
    for name in report_to:
        if name == "mlflow":
            raise ConfigError(f"{where}: report_to: mlflow is the workflow's store already (pgpo.tracking writes "
                              "every run there); name other trackers here")
        if name not in INTEGRATION_TO_CALLBACK:
            close = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: report_to: unknown tracker {name!r}; {hint}"
                              f"known: {sorted(INTEGRATION_TO_CALLBACK)}")
        if name not in available:
            raise ConfigError(f"{where}: report_to: {name} is not installed in this environment (pip install {name})")
