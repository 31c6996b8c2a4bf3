"""Vision-language model families: what differs between them, in one module each (issue 24, item 3).

Everything else runs the same code for every family: rollouts (TRL + the family's processor and chat template),
the blind view (pgpo.models.blind_sequence: the unmasked sequence's rope positions from the model's own
`get_rope_index`, the visual columns dropped, the backbone run on text tokens only), the loss, evaluation through
lmms-eval. A family states what the rest of the harness cannot read from a checkpoint before it loads: the pixels
per visual token (prompt budgets, the memory planner), the hub ids it covers, and how to build a tiny model of it
offline. A third family (InternVL, Qwen3.5) is one module here that calls `register`; this package imports every
module in it.

The contract a family's model must meet for the blind view (tests/models/test_families.py checks it on each tiny
model): `model.model.get_rope_index(input_ids, mm_token_type_ids=, image_grid_thw=, attention_mask=)` gives the
full sequence's positions; `model.base_model(input_ids=, attention_mask=, position_ids=)` without pixel values is a
text-only pass; and dropping the visual columns equals masking them out of attention, also when the model injects
visual features into language layers (Qwen3-VL's DeepStack adds them at visual positions only).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgpo.config.yamlconf import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    """One family of vision-language models."""

    name: str
    """The name recipes and `pgpo build-tiny --family` use."""
    model_types: tuple[str, ...]
    """config.json `model_type` values of its checkpoints."""
    hub_prefixes: tuple[str, ...]
    """Hub ids starting with one of these are this family (a hub id's config is not readable before download)."""
    patch_size: int
    """Vision patch side in pixels."""
    merge_size: int
    """Patches merged per side into one visual token."""
    build_tiny: Callable
    """(pgpo.tiny.model.TinyModelConfig, tokenizer, chat_template) -> (model, processor): a tiny model of the family."""
    default_pixels: tuple[int, int] = (56 * 56, 28 * 28 * 16384)
    """(min, max) pixels per image of the released checkpoints' processors, where nothing pins a budget: what the
    evaluation's prompt bound assumes then (Qwen2.5-VL's: 3,136 to 12,845,056)."""
    memory_model: bool = False
    """pgpo.models.memory_estimate counts this family's passes (the planner refuses the others)."""

    @property
    def visual_token_pixels(self) -> int:
        """Pixels of the (resized) image per visual token."""
        return (self.patch_size * self.merge_size) ** 2

    @property
    def resize_factor(self) -> int:
        """Image sides are resized to multiples of this (the processor's smart_resize factor)."""
        return self.patch_size * self.merge_size


FAMILIES: dict[str, ModelFamily] = {}
DEFAULT = "qwen2_5_vl"


def register(family: ModelFamily) -> ModelFamily:
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} registered twice")
    FAMILIES[family.name] = family
    return family


def family_named(name: str, where: str = "") -> ModelFamily:
    if name not in FAMILIES:
        raise ConfigError(f"{where}{': ' if where else ''}unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_of_config(config: dict, where: str = "config.json") -> ModelFamily:
    """The family of a checkpoint's config.json (its model_type)."""
    model_type = config.get("model_type")
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ConfigError(f"{where}: model_type {model_type!r} is not a family this harness knows "
                      f"({', '.join(t for f in FAMILIES.values() for t in f.model_types)}); add a module to "
                      "pgpo/models/families/")


def family_for(model_path: str, family: str = "") -> ModelFamily:
    """The family a recipe names (model.family), else a local checkpoint's from its config.json (an adapter
    folder: its base's), else a hub id's from its prefix; anything else (a path not written yet) is the default
    family, Qwen2.5-VL: a recipe for another family whose model is not on disk yet names it (model.family)."""
    from pgpo.util.jsonfile import adapter_base, read_json

    if family:
        return family_named(family)
    base = str(adapter_base(model_path) or model_path)
    local = Path(base).expanduser() / "config.json"
    if local.is_file():
        return family_of_config(read_json(local, "the checkpoint's writer", what="model config"), str(local))
    for entry in FAMILIES.values():
        if base.startswith(entry.hub_prefixes):
            return entry
    return FAMILIES[DEFAULT]


for _module in pkgutil.iter_modules([str(Path(__file__).parent)]):
    importlib.import_module(f"{__name__}.{_module.name}")
