"""YAML -> typed dataclasses, and the attribute docstrings that document their fields. A leaf: it imports nothing
from pgpo, so the registries (pgpo.methods.registry) and the configs (pgpo.config.schema, pgpo.evaluation.config) can both use it
without an import circle.

A field is documented by a string literal right after it (an attribute docstring, as Sphinx and PEP 257 read it):

    tau: float = 0.4
    \"\"\"Threshold on normalised dependency: tokens below are suppressed, above boosted.\"\"\"

`field_docs` reads them back from the class source, so `pgpo methods --fields` and the table in
baselines/README.md are generated from the declaration itself.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import textwrap
import typing
from pathlib import Path
from typing import Any

import yaml

from pgpo.util.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or field is invalid; the message names it."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently: a recipe
    with two `optim:` blocks trained on the second alone)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, where: str):
    """YAML text parsed with UniqueKeyLoader; invalid YAML or a repeated key is a ConfigError naming `where`."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:  # one line: file:line:column and what is wrong there
        mark = e.problem_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = "; ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError(f"{where}{at}: invalid YAML ({what})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML ({' '.join(str(e).split())})") from None


def read_yaml(path: Path, allow_empty: bool = False) -> dict:
    """The top-level mapping of a YAML file; a missing file, invalid YAML, a repeated key, a non-mapping or (unless
    `allow_empty`) an empty file is a ConfigError."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: a directory, not a YAML file")
    data = load_yaml_text(path.read_text(), str(path))
    if data is None and not allow_empty:
        # an empty recipe once trained on the code's defaults without a word
        raise ConfigError(f"{path}: empty; a recipe or method file sets at least one field")
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def nest_dotted(pairs) -> dict:
    """[('a.b', 1), ('c', 'x')] -> {'a': {'b': 1}, 'c': 'x'}: dotted override keys as nested mappings (`--set`,
    the workflow's train_set / eval_set / ablation columns)."""
    out: dict = {}
    for key, value in pairs:
        node = out
        *parents, leaf = str(key).split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is set both as a value and as a mapping")
        node[leaf] = value
    return out


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override` laid over it, recursively for nested mappings (neither input is modified)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_dataclass(cls, raw: Any, where: str):
    """Recursively build dataclass `cls` from a dict, rejecting unknown keys with file/field in the message."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in raw.items():
        f = fields[name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            kwargs[name] = build_dataclass(sub, value, f"{where}.{name}")
        else:
            kwargs[name] = coerce_scalar(value, f.type, f"{where}.{name}")
    return cls(**kwargs)


def coerce_scalar(value: Any, annotation: Any, where: str) -> Any:
    """Scalars as their field's type: YAML 1.1 reads '1e-6' as a string and users write 1 for 1.0. An optional
    field (`float | None`) takes null or its type."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not isinstance(annotation, str) and type(None) in typing.get_args(annotation):
        kind = " | ".join("None" if a is type(None) else getattr(a, "__name__", "") for a in typing.get_args(annotation))
    if kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    try:
        if kind == "float" and isinstance(value, (int, str)) and not isinstance(value, bool):
            value = float(value)
        if kind == "int" and isinstance(value, str):
            return int(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a {kind}, got {value!r}") from None
    if kind in ("float", "int") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: expected a {kind}, got {value!r}")
    if kind == "float" and not math.isfinite(value):
        # an infinite lr passed every `> 0` check and saved checkpoint-1 with every tensor non-finite
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if kind == "int" and isinstance(value, float):
        if not value.is_integer():  # a count: 2.5 steps, 0.5 generations
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return int(value)
    if kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def load_yaml_config(cls, path: str | Path, overrides: dict | None, validate) -> Any:
    """Build dataclass `cls` from a YAML file with --set style overrides, then validate(cfg, where)."""
    path = Path(path)
    cfg = build_dataclass(cls, deep_merge(read_yaml(path), overrides or {}), str(path))
    validate(cfg, str(path))
    return cfg


# -- attribute docstrings -------------------------------------------------------------------------------------------
def field_docs(cls) -> dict[str, str]:
    """{field name: its attribute docstring} of a dataclass, read from its source with `ast` (whitespace folded
    to single spaces). A field without a docstring is absent; tests demand one for every field."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One documented field of a (possibly nested) config dataclass."""

    path: str
    """Dotted path as written in YAML or `--set`, e.g. `loss.epsilon_high`."""
    type: str
    """The annotation as written (`float`, `dict[str, Any]`, ...)."""
    default: str
    """The default value (repr), or `{}` / `[]` for empty factories."""
    doc: str
    """The field's attribute docstring."""


def documented_fields(cls, prefix: str = "") -> list[FieldDoc]:
    """Every field of dataclass `cls`, nested dataclasses flattened to dotted paths, in declaration order."""
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            out += documented_fields(sub, f"{prefix}{f.name}.")
            continue
        default = sub() if sub is not None else f.default
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(FieldDoc(f"{prefix}{f.name}", annotation, repr(default), docs.get(f.name, "")))
    return out


def no_repeats(mapping: dict, field: str, where: str) -> None:
    """A list that names runs, methods or columns lists each once: a repeated seed or method would be trained or
    evaluated once and then averaged twice (an interval made of copies, n counted double)."""
    values = mapping.get(field)
    if not isinstance(values, list):
        return
    twice = sorted({repr(v) for i, v in enumerate(values) if v in values[:i]})
    if twice:
        raise ConfigError(f"{where}: {', '.join(twice)} listed more than once in {values}; list each once")
