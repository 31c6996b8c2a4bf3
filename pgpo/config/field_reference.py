"""The reference of every method field and component parameter, generated from the attribute docstrings where
they are declared: `pgpo methods --fields` prints it, and the table in baselines/README.md is this text (a test
keeps them equal; `pgpo methods --fields --write` regenerates the README's block)."""

from __future__ import annotations

from pathlib import Path

from pgpo.methods.components import REGISTRIES
from pgpo.config.schema import MethodConfig
from pgpo.config.yamlconf import documented_fields

README = Path(__file__).resolve().parents[2] / "baselines" / "README.md"
BEGIN, END = "<!-- fields:begin (pgpo methods --fields --write) -->", "<!-- fields:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def fields_table() -> str:
    """Markdown: every MethodConfig field, then every registered component's parameters (as they are written
    under `shaper.params`, `blind_view.params` or `loss_terms.<name>`), from their attribute docstrings."""
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in documented_fields(MethodConfig):
        lines.append(f"| `{f.path}` | `{_cell(f.type)}` | `{_cell(f.default)}` | {_cell(f.doc)} |")
    lines += ["", "| component | parameter | type | default | meaning |", "|---|---|---|---|---|"]
    for section, registry in REGISTRIES:
        for name in registry.names():
            entry = registry.get(name)
            fields = documented_fields(entry.params) if entry.params else []
            needs = " (needs the blind view)" if entry.needs_blind_view else ""
            if not fields:
                lines.append(f"| {section} `{name}`{needs} | - | | | no parameters |")
            for f in fields:
                lines.append(f"| {section} `{name}`{needs} | `{f.path}` | `{_cell(f.type)}` | `{_cell(f.default)}` "
                             f"| {_cell(f.doc)} |")
    return "\n".join(lines) + "\n"


def readme_with_table(text: str) -> str:
    """`text` (baselines/README.md) with the block between the field-table markers replaced by fields_table()."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{README}: field-table markers {BEGIN!r} ... {END!r} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{fields_table()}{END}{tail}"
