"""Argument helpers shared by the command modules (pgpo.cli, pgpo.diagnostics.cli): --set overrides and the
checkpoint check that runs before any model loads."""

from __future__ import annotations

from pathlib import Path

import yaml


def _overrides(pairs: list[str]) -> dict:
    """--set a.b=1 --set c=x -> {'a': {'b': 1}, 'c': 'x'} (values parsed as YAML scalars)."""
    from pgpo.config.yamlconf import nest_dotted

    bad = [pair for pair in pairs or [] if "=" not in pair]
    if bad:
        raise SystemExit(f"pgpo: --set expects KEY=VALUE, got {bad[0]!r}")
    return nest_dotted((key, yaml.safe_load(value)) for key, value in (pair.split("=", 1) for pair in pairs or []))


def check_checkpoint(path: str, flag: str = "checkpoint", hub: bool = True) -> None:
    """A checkpoint argument, before any model loads: a local path (starts with / . ~, or exists) must be a model
    folder with config.json; anything else must look like a hub id org/name (when the command takes one)."""
    from pgpo.config.schema import ConfigError, is_hub_id
    from pgpo.util.jsonfile import adapter_base

    p = Path(path).expanduser()
    if p.is_dir():
        base = adapter_base(p)
        if base is not None:  # a LoRA checkpoint: the model is its base with the adapter merged in
            return check_checkpoint(base, f"{flag} {path} (a LoRA adapter): base_model_name_or_path", hub)
        if not (p / "config.json").is_file():
            raise ConfigError(f"{flag} {path}: no config.json there (not a Hugging Face model folder)")
        return
    if p.exists():
        raise ConfigError(f"{flag} {path}: a file, not a directory (expected a Hugging Face model folder)")
    if not (hub and is_hub_id(path)):
        raise ConfigError(f"{flag} {path}: no such directory (expected a Hugging Face model folder with config.json"
                          + (", or a hub id org/name)" if hub else ")"))
