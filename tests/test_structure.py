"""Code structure the guide asks for: no import circle, one place that resolves a method's components, every config
and component field documented where it is declared (and the generated reference up to date), small files."""

import ast
import dataclasses
from pathlib import Path

from pgpo.config import REPO

PACKAGE = REPO / "pgpo"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _pgpo_imports(path: Path) -> set[str]:
    """Every pgpo module `path` imports, at module level or inside a function (a lazy import is still an edge)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pgpo"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pgpo")}
    return found


def _import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done = [], set()

    def visit(node, stack):
        for dep in sorted(graph[node]):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                done.add(dep)
                visit(dep, stack + [dep])

    for node in sorted(graph):
        if node not in done:
            done.add(node)
            visit(node, [node])
    return cycles


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SOURCES}
    return {m: {d for d in _pgpo_imports(p) if d in modules and d != m} for m, p in modules.items()}


def test_no_import_circle_in_the_package():
    assert _import_cycles(_graph()) == []


def test_the_cycle_finder_finds_the_circle_this_package_had():
    """registry -> config (coerce_scalar) -> shaping -> registry, as before pgpo.yamlconf."""
    graph = {"registry": {"config"}, "config": {"shaping", "yamlconf"}, "shaping": {"registry"}, "yamlconf": set()}
    assert [sorted(cycle[:-1]) for cycle in _import_cycles(graph)] == [["config", "registry", "shaping"]]


def test_the_yaml_helpers_are_a_leaf():
    assert _pgpo_imports(PACKAGE / "yamlconf.py") == set()
    assert _graph()["pgpo.registry"] == {"pgpo.yamlconf"}


def test_components_are_resolved_in_one_place():
    """Config validation and the trainer both build a method's components through resolve_components; no other
    module imports a registry (where it could look a component up by name)."""
    registries = {"SHAPERS", "LOSS_TERMS", "BLIND_VIEWS"}
    importers = sorted(str(p.relative_to(REPO)) for p in SOURCES for node in ast.walk(ast.parse(p.read_text()))
                       if isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & registries)
    assert importers == ["pgpo/components.py"] * 3  # one import per registry
    for module in ("config.py", "trainer.py"):
        assert "resolve_components(" in (PACKAGE / module).read_text(), module


def test_every_method_agrees_on_needing_the_blind_view():
    from pgpo.components import resolve_components
    from pgpo.config import available_methods, load_method

    for name in available_methods():
        method = load_method(name)
        components = resolve_components(method)
        needs = components.shaper.entry.needs_blind_view or any(t.entry.needs_blind_view for t in
                                                                 components.loss_terms)
        assert method.needs_blind_view() == needs == (components.blind_view is not None), name
    assert load_method("pgpo").needs_blind_view() and not load_method("grpo").needs_blind_view()


def test_no_file_of_the_package_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


# -- attribute docstrings ---------------------------------------------------------------------------------------
def _documented_classes() -> list[type]:
    """Config dataclasses, every registered component's parameters, and the extension API's dataclasses."""
    from pgpo import blind, config, loss_terms, registry, shaping, warmstart, yamlconf
    from pgpo.components import REGISTRIES, Component, MethodComponents
    from pgpo.evaluation import config as eval_config

    classes = [c for m in (config, eval_config, warmstart) for c in vars(m).values()
               if dataclasses.is_dataclass(c) and c.__module__ == m.__name__]
    for _, reg in REGISTRIES:
        classes += [reg.get(n).params for n in reg.names() if reg.get(n).params]
    classes += [blind.BlindInputs, shaping.ShapingBatch, shaping.ShapingResult, loss_terms.LossTermBatch,
                loss_terms.LossTermResult, registry.Entry, yamlconf.FieldDoc, Component, MethodComponents]
    return list(dict.fromkeys(classes))


def test_every_field_has_an_attribute_docstring():
    from pgpo.yamlconf import field_docs

    classes = _documented_classes()
    assert len(classes) > 20  # the config modules were found
    for cls in classes:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__module__}.{cls.__qualname__}: no docstring for {missing}"


def test_field_docs_reads_docstrings_not_comments():
    from pgpo.yamlconf import documented_fields, field_docs

    @dataclasses.dataclass
    class Example:
        a: int = 1
        """First
        field."""
        b: float = 2.0  # a comment is not documentation
        c: str = "x"

        def method(self):
            """Not a field's."""

    assert field_docs(Example) == {"a": "First field."}
    assert [(f.path, f.type, f.default, f.doc) for f in documented_fields(Example)][:2] == [
        ("a", "int", "1", "First field."), ("b", "float", "2.0", "")]


def test_the_readme_field_table_is_generated_from_the_docstrings():
    """Stale? Regenerate with `pgpo methods --fields --write`."""
    from pgpo.field_reference import README, fields_table, readme_with_table

    text = README.read_text()
    assert readme_with_table(text) == text, "baselines/README.md is stale: run `pgpo methods --fields --write`"
    table = fields_table()
    for row in ("| `loss.epsilon_high` | `float` | `0.28` |", "| shaper `pgpo` (needs the blind view) | `tau` |",
                "| blind_view `patch_blackening` | `per` | `str` | `'response'` |"):
        assert row in table, row
    stale = text.replace("Boost strength above the threshold.", "Boost strength.")
    assert readme_with_table(stale) != stale  # an edited docstring (or table) is seen


def test_pgpo_methods_fields_prints_the_generated_table(capsys):
    from pgpo.cli import main
    from pgpo.field_reference import fields_table

    assert main(["methods", "--fields"]) in (0, None)
    assert capsys.readouterr().out == fields_table()


def test_statistics_are_namespaced_by_the_trainer_not_the_component():
    """Components return relative names; the namespace comes from the registration."""
    import torch

    from pgpo.blind import BLIND_VIEWS
    from pgpo.shaping import SHAPERS, PGPOParams, ShapingBatch, VPPOParams

    mask = torch.ones(4, 5)
    batch = ShapingBatch(torch.tensor([1.0, -1.0, 0.5, -0.5]), mask, torch.rand(4, 5, generator=torch.Generator()
                                                                                  .manual_seed(0)))
    for name, params in (("pgpo", PGPOParams()), ("vppo", VPPOParams())):
        stats = SHAPERS.get(name).fn(batch, params).stats
        assert stats and not any("/" in k for k in stats), (name, stats)
    names = {SHAPERS.get("pgpo").stats_namespace, SHAPERS.get("vppo").stats_namespace,
             BLIND_VIEWS.get("patch_blackening").stats_namespace}
    assert names == {"weights", "vppo", "blind"}  # the metric names runs have always logged
