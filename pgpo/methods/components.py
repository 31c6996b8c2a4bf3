"""A method's registered components, resolved once: its token shaper, loss terms and (when one of them needs it) its
blind view, each with validated parameters. The same function serves config validation (pgpo.config.schema) and the
trainer (pgpo.training.trainer), so what a method file is checked against is exactly what trains.

It imports nothing from pgpo.config.schema (which calls it), so the two form no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgpo.methods.blind import BLIND_VIEWS
from pgpo.methods.loss_terms import LOSS_TERMS
from pgpo.methods.registry import Entry, Registry
from pgpo.methods.shaping import SHAPERS
from pgpo.config.yamlconf import ConfigError


@dataclass(frozen=True)
class Component:
    """One registered component as a method configures it."""

    entry: Entry
    """The registry entry (function, parameter class, what it needs)."""
    params: Any
    """Its validated parameters (an instance of ``entry.params``, or None)."""


@dataclass(frozen=True)
class MethodComponents:
    """Everything the trainer runs for one method, besides TRL's own loss."""

    shaper: Component
    """The token shaper."""
    loss_terms: list[Component]
    """Auxiliary loss terms, sorted by name (the order their values are added to the loss)."""
    blind_view: Component | None
    """The blind view, or None when neither the shaper nor any loss term needs it."""


def _component(registry: Registry, name: str, raw: dict | None, where: str) -> Component:
    try:
        entry = registry.get(name)
        return Component(entry, entry.make_params(raw))
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from e


def resolve_components(method, where: str = "method") -> MethodComponents:
    """Look up and validate the shaper, loss terms and blind view of `method` (a pgpo.config.schema.MethodConfig); a
    ConfigError names `where` and the section. The blind view's parameters are validated even when no component needs it (a typo is still one)."""
    shaper = _component(SHAPERS, method.shaper.name, method.shaper.params, f"{where}: shaper")
    terms = [_component(LOSS_TERMS, name, params, f"{where}: loss_terms")
             for name, params in sorted(method.loss_terms.items())]
    view = _component(BLIND_VIEWS, method.blind_view.name, method.blind_view.params, f"{where}: blind_view")
    needed = shaper.entry.needs_blind_view or any(t.entry.needs_blind_view for t in terms)
    return MethodComponents(shaper, terms, view if needed else None)


REGISTRIES = (("shaper", SHAPERS), ("blind_view", BLIND_VIEWS), ("loss_terms", LOSS_TERMS))  # as MethodConfig names them
