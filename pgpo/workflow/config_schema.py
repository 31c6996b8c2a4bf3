"""The workflow config against workflows/schemas/config.schema.yaml: one line per violation, naming the file that set
the key, the key's path and what the schema expects.

snakemake.utils.validate reports a violation as the whole schema and the whole config (about 400 lines, the line
that matters at the top); the Snakefile runs this check first and calls validate only to fill in the defaults. An
unknown key gets the closest key the schema knows at that place (a did-you-mean), since a typo is the usual cause.
"""

from __future__ import annotations

import difflib
import os
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pgpo.config.yamlconf import ConfigError, load_yaml_text

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SCHEMA = Path(__file__).resolve().parents[2] / "workflows/schemas/config.schema.yaml"

_JSON_TYPES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def key_path(path) -> str:
    """('sizes', '3b', 'model') -> 'sizes.3b.model'; list indices in brackets: ('seeds', 0) -> 'seeds[0]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the whole config)"


_REPR = reprlib.Repr()  # a value in an error stays short, however large the mapping or list
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 40, 40, 4, 3


def _short(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:56] + " ..."


def _kinds(schema: dict) -> list[str]:
    """The values a schema node accepts, in words: its enum values, else its types, else its alternatives'."""
    if "enum" in schema:
        return [repr(v) for v in schema["enum"]]
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types or []
    alternatives = schema.get("oneOf", []) + schema.get("anyOf", [])
    return [_JSON_TYPES.get(t, t) for t in types] or [k for alt in alternatives for k in _kinds(alt)]


def _expected(schema: dict) -> str:
    """What a schema node accepts, in words, with its description when it has one."""
    kinds = " or ".join(_kinds(schema)) or "a value the schema allows"
    return f"{kinds} ({schema['description']})" if "description" in schema else kinds


def _did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(word), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def _describe(error: ValidationError) -> list[tuple[tuple, str]]:
    """(key path, what is wrong) for one jsonschema error; an unknown-keys error gives one per unknown key."""
    path, kind, value = tuple(error.absolute_path), error.validator, error.instance
    if kind == "additionalProperties" and error.validator_value is False:
        known = sorted(error.schema.get("properties", {}))
        return [(path + (key,), f"unknown key{_did_you_mean(key, known)}")
                for key in sorted(set(value) - set(known), key=str)]
    if kind == "required":
        return [(path + (key,), "missing: required here") for key in error.validator_value if key not in value]
    if kind == "type":
        return [(path, f"expected {_expected(error.schema)}, got {_short(value)}")]
    if kind == "enum":
        known = [str(v) for v in error.validator_value]
        return [(path, f"{_short(value)} is not one of {', '.join(known)}{_did_you_mean(value, known)}")]
    if kind in ("oneOf", "anyOf"):
        return [(path, f"expected {_expected(error.schema)}, got {_short(value)}")]
    # minimum, minItems, pattern, ...: jsonschema's message is one short sentence about the value
    return [(path, error.message if len(error.message) <= 160 else f"{kind} {error.validator_value!r} not met")]


def violations(config: dict, schema: dict) -> list[tuple[tuple, str]]:
    """Every violation of `schema` by `config` as (key path, what is wrong), in key order."""
    from jsonschema import Draft202012Validator  # here: pgpo.workflow.plan (the table and track steps) imports us

    found = {item for error in Draft202012Validator(schema).iter_errors(config) for item in _describe(error)}
    return sorted(found, key=lambda v: (key_path(v[0]), v[1]))


def _holds(data: Any, path: tuple) -> bool:
    """True if `data` (one source's YAML) sets the key or list item at `path`."""
    for part in path:
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_list or isinstance(data, dict) and part in data):
            return False
        data = data[part]
    return True


def source_of(path: tuple, sources: list[tuple[str, dict]]) -> str:
    """The first source (highest precedence first) that sets `path`, else the one that sets its nearest parent key
    (a missing key belongs where its mapping is), else the first config file."""
    for n in range(len(path), 0, -1):
        for name, data in sources:
            if _holds(data, path[:n]):
                return name
    files = [name for name, _ in sources if name != "--config"]
    return files[0] if files else "workflow config"


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return os.path.normpath(str(path))


def config_sources(files, overrides: dict | None, config_dir: Path, given=None) -> list[tuple[str, dict]]:
    """Where a workflow config's keys come from, highest precedence first: the `--config` values, the config files
    (the last wins), then the profiles the winning `extends:` chain names (in `config_dir`). `given`: those of
    `files` that came from the command line (`--configfile`), which Snakemake applies over the Snakefile's own
    `configfile:` whatever the order of `files` (workflow.configfiles lists them first)."""
    given = [f for f in files or [] if f in list(given or [])]
    files = [f for f in files or [] if f not in given] + given  # in the order they were merged
    sources = [("--config", dict(overrides))] if overrides else []
    for f in reversed(files):
        sources.append((_shown(Path(f)), load_yaml_text(Path(f).read_text(), str(f)) or {}))
    parent = next((data["extends"] for _, data in sources if "extends" in data), None)
    seen = set()
    while parent and parent not in seen and (config_dir / parent).is_file():  # a missing parent: resolve_extends
        seen.add(parent)
        data = load_yaml_text((config_dir / parent).read_text(), str(config_dir / parent)) or {}
        sources.append((_shown(config_dir / parent), data))
        parent = data.get("extends")
    return sources


def check_config(config: dict, sources: list[tuple[str, dict]], schema: Path | dict = SCHEMA) -> None:
    """ConfigError with one line per violation, `<file>: <key path>: <what is wrong>`, if `config` (extends
    resolved, defaults not yet filled) breaks the schema."""
    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    lines = [f"{source_of(path, sources)}: {key_path(path)}: {what}" for path, what in violations(config, schema)]
    if lines:
        raise ConfigError("\n".join(lines))
