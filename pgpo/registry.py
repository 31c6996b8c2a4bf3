"""A small typed registry: one decorated function per token shaper or blind view; unknown names fail listing the
known ones. The trainer looks components up here and never branches on a method's name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """A registered component: the function, its typed parameter class and the inputs it needs."""

    name: str
    fn: F
    params: type | None
    needs_dependency: bool
    per_response: bool = False  # shaper only: a response's token advantages depend on that response alone

    def make_params(self, raw: dict[str, Any] | None, where: str = "") -> Any:
        """Validate raw YAML parameters into the component's dataclass (unknown keys are an error)."""
        raw = dict(raw or {})
        if self.params is None:
            if raw:
                raise ValueError(f"{where}{self.name!r} takes no parameters, got {sorted(raw)}")
            return None
        from pgpo.config import coerce_scalar

        fields = {f.name: f for f in dataclasses.fields(self.params)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ValueError(f"{where}unknown parameter(s) {unknown} for {self.name!r}; known: {sorted(fields)}")
        return self.params(**{k: coerce_scalar(v, fields[k].type, f"{where}{self.name}.{k}") for k, v in raw.items()})


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, params: type | None = None, needs_dependency: bool = False,
                 per_response: bool = False):
        def decorator(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, fn, params, needs_dependency, per_response)
            return fn
        return decorator

    def get(self, name: str) -> Entry[F]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)
