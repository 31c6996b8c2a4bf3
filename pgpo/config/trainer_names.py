"""Recipe values that name something of transformers' Trainer (an optimizer, a scheduler, a tracker), checked before
the model loads, where the Trainer would otherwise refuse them (or accept and diverge) after it has loaded.

The optimizer and scheduler names are copied from transformers 5.17.0 (requirements/cpu.txt pins it): OptimizerNames
in transformers.training_args and SchedulerType in transformers.trainer_utils. Importing either module imports torch
and most of transformers (about 3 s of CPU), and the names are checked by every command that reads a recipe
(`snakemake -n` included). tests/config/test_config.py compares them with the installed transformers, so an upgrade
that changes them fails there. Trackers are checked against transformers itself, only when a recipe names one.
"""

from __future__ import annotations

import difflib

from pgpo.config.yamlconf import ConfigError

OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw",
)

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)


def check_optimizer(o, where: str) -> None:
    """What the Trainer would refuse (or accept and diverge on) after the model has loaded, named before it loads."""
    if not (0 <= o.adam_beta1 < 1 and 0 <= o.adam_beta2 < 1) or not o.adam_epsilon > 0:
        raise ConfigError(f"{where}: optim.adam_beta1 and adam_beta2 must be in [0, 1) and adam_epsilon > 0, got "
                          f"{o.adam_beta1}, {o.adam_beta2}, {o.adam_epsilon}")
    for name, value, known in (("optimizer", o.optimizer, OPTIMIZERS), ("scheduler", o.scheduler, SCHEDULERS)):
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: optim.{name} {value!r} is not a Trainer {name}; {hint}known: {list(known)}")

def check_report_to(report_to: list, where: str) -> None:
    """Every tracker named is one transformers knows and is installed (its callback would fail after the model
    loads otherwise); "mlflow" is the workflow's own store already."""
    if not isinstance(report_to, list) or not all(isinstance(r, str) for r in report_to):
        raise ConfigError(f"{where}: report_to must be a list of tracker names, got {report_to!r}")
    if not report_to:
        return  # no transformers import for the usual recipe (commands that read YAML stay light)
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

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
