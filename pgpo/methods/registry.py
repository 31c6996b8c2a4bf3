"""A small typed registry: one decorated function per token shaper, blind view or loss term; unknown names fail
listing the known ones. The trainer looks components up here (through pgpo.methods.components.resolve_components) and
never branches on a method's name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pgpo.config.yamlconf import coerce_scalar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """A registered component: the function, its typed parameter class and the inputs it needs."""

    name: str
    """The name a method's YAML uses for it."""
    fn: F
    """The component itself: ``fn(inputs, params) -> result`` (the registry's kind fixes both types)."""
    params: type | None
    """Its parameter dataclass (None: it takes no parameters)."""
    needs_blind_view: bool
    """The trainer computes the blind view's log-probs for it (shaper: the token visual dependency S from them;
    loss term: ``blind_logps``)."""
    per_response: bool = False
    """Shaper only: a response's token advantages depend on that response alone (the trainer may then shape each
    micro-batch inside the loss forward)."""
    stats_namespace: str = ""
    """Prefix the trainer puts before the component's relative statistic names (``<namespace>/<stat>``)."""

    def make_params(self, raw: dict[str, Any] | None, where: str = "") -> Any:
        """Validate raw YAML parameters into the component's dataclass (unknown keys are an error)."""
        raw = dict(raw or {})
        if self.params is None:
            if raw:
                raise ValueError(f"{where}{self.name!r} takes no parameters, got {sorted(raw)}")
            return None
        fields = {f.name: f for f in dataclasses.fields(self.params)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ValueError(f"{where}unknown parameter(s) {unknown} for {self.name!r}; known: {sorted(fields)}")
        return self.params(**{k: coerce_scalar(v, fields[k].type, f"{where}{self.name}.{k}") for k, v in raw.items()})


class Registry(Generic[F]):
    """The components of one kind (token shaper, blind view, loss term), by name."""

    def __init__(self, kind: str, stats_namespace: str = ""):
        """`kind` names the registry in errors; `stats_namespace` is the default statistics prefix of its entries
        (empty: each entry's own name)."""
        self.kind = kind
        self.stats_namespace = stats_namespace
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, params: type | None = None, needs_blind_view: bool = False,
                 per_response: bool = False, stats_namespace: str = ""):
        """Decorator registering ``fn`` under `name`. The contract the trainer relies on:

        - ``fn(inputs, params)`` is called with the kind's input dataclass (ShapingBatch, BlindInputs,
          LossTermBatch) and an instance of `params` (None when `params` is None); it must not keep state between
          calls (reruns and resumes must compute the same result from the same inputs).
        - `params` is a dataclass whose fields have attribute docstrings (they are the documentation: `pgpo
          methods --fields`, baselines/README.md) and whose ``__post_init__`` raises ValueError on a bad value
          (reported naming the method file); YAML scalars are coerced to the field's annotated type first.
        - `needs_blind_view`: the trainer computes the blind view of every rollout batch for this component.
        - `per_response` (shapers): token advantages of a response depend only on that response.
        - statistics a component returns have names relative to its namespace (`stats_namespace`, else the
          registry's, else `name`); the trainer logs them as ``<namespace>/<stat>``.
        A name registered twice is an error."""
        def decorator(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            namespace = stats_namespace or self.stats_namespace or name
            self._entries[name] = Entry(name, fn, params, needs_blind_view, per_response, namespace)
            return fn
        return decorator

    def get(self, name: str) -> Entry[F]:
        """The entry registered as `name`; KeyError listing every known name otherwise (the message a method
        file with a typo gets)."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)
