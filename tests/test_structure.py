"""Code structure the guide asks for: no import circle, one place that resolves a method's components, every config
and component field documented where it is declared (and the generated reference up to date), small files."""

import ast
import dataclasses
from pathlib import Path

from pgpo.config.schema import REPO

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
    """registry -> config (coerce_scalar) -> shaping -> registry, as before pgpo.config.yamlconf."""
    graph = {"registry": {"config"}, "config": {"shaping", "yamlconf"}, "shaping": {"registry"}, "yamlconf": set()}
    assert [sorted(cycle[:-1]) for cycle in _import_cycles(graph)] == [["config", "registry", "shaping"]]


def test_the_yaml_helpers_are_a_leaf():
    assert _pgpo_imports(PACKAGE / "config" / "yamlconf.py") == {"pgpo.util.errors", "pgpo.util.errors.UserError"}
    assert _graph()["pgpo.methods.registry"] == {"pgpo.config.yamlconf"}


def test_components_are_resolved_in_one_place():
    """Config validation and the trainer both build a method's components through resolve_components; no other
    module imports a registry (where it could look a component up by name)."""
    registries = {"SHAPERS", "LOSS_TERMS", "BLIND_VIEWS"}
    importers = sorted(str(p.relative_to(REPO)) for p in SOURCES for node in ast.walk(ast.parse(p.read_text()))
                       if isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & registries)
    assert importers == ["pgpo/methods/components.py"] * 3  # one import per registry
    for module in ("config/schema.py", "training/trainer.py"):
        assert "resolve_components(" in (PACKAGE / module).read_text(), module


def test_every_method_agrees_on_needing_the_blind_view():
    from pgpo.methods.components import resolve_components
    from pgpo.config.schema import available_methods, load_method

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
    from pgpo.config import schema as config
    from pgpo.config import yamlconf
    from pgpo.methods import blind, loss_terms, registry, shaping
    from pgpo.tiny import warmstart
    from pgpo.methods.components import REGISTRIES, Component, MethodComponents
    from pgpo.evaluation import config as eval_config

    classes = [c for m in (config, eval_config, warmstart) for c in vars(m).values()
               if dataclasses.is_dataclass(c) and c.__module__ == m.__name__]
    for _, reg in REGISTRIES:
        classes += [reg.get(n).params for n in reg.names() if reg.get(n).params]
    classes += [blind.BlindInputs, shaping.ShapingBatch, shaping.ShapingResult, loss_terms.LossTermBatch,
                loss_terms.LossTermResult, registry.Entry, yamlconf.FieldDoc, Component, MethodComponents]
    return list(dict.fromkeys(classes))


def test_every_field_has_an_attribute_docstring():
    from pgpo.config.yamlconf import field_docs

    classes = _documented_classes()
    assert len(classes) > 20  # the config modules were found
    for cls in classes:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__module__}.{cls.__qualname__}: no docstring for {missing}"


def test_field_docs_reads_docstrings_not_comments():
    from pgpo.config.yamlconf import documented_fields, field_docs

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
    from pgpo.config.field_reference import README, fields_table, readme_with_table

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
    from pgpo.config.field_reference import fields_table

    assert main(["methods", "--fields"]) in (0, None)
    assert capsys.readouterr().out == fields_table()


def test_statistics_are_namespaced_by_the_trainer_not_the_component():
    """Components return relative names; the namespace comes from the registration."""
    import torch

    from pgpo.methods.blind import BLIND_VIEWS
    from pgpo.methods.shaping import SHAPERS, PGPOParams, ShapingBatch, VPPOParams

    mask = torch.ones(4, 5)
    batch = ShapingBatch(torch.tensor([1.0, -1.0, 0.5, -0.5]), mask, torch.rand(4, 5, generator=torch.Generator()
                                                                                  .manual_seed(0)))
    for name, params in (("pgpo", PGPOParams()), ("vppo", VPPOParams())):
        stats = SHAPERS.get(name).fn(batch, params).stats
        assert stats and not any("/" in k for k in stats), (name, stats)
    names = {SHAPERS.get("pgpo").stats_namespace, SHAPERS.get("vppo").stats_namespace,
             BLIND_VIEWS.get("patch_blackening").stats_namespace}
    assert names == {"weights", "vppo", "blind"}  # the metric names runs have always logged


# -- the layers (issue 22): only pgpo.training imports trl, only its bridge names TRL's private API -----------------
WITHOUT_TRAINING = ("config", "methods", "data", "rewards", "util", "stats", "models", "records")
"""Packages that run without trl and without the training package: a method YAML loads, `snakemake -n` plans, data
validates and answers grade on a machine whose TRL is broken or absent."""
BRIDGE = ("pgpo.training.trl_bridge", "pgpo.training.trl_head")
"""The only modules that name TRL's private API (its contract tests: tests/training/test_trl_contract.py)."""


def _import_statements(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, imported names) of every import in `path`, module level or inside a function: `import a.b` ->
    ("a.b", ()), `from a import b, c` -> ("a", ("b", "c"))."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
    return found


def layer_violations(statements: dict[str, list[tuple[str, tuple[str, ...]]]]) -> list[str]:
    """The layer contract, over {module: its import statements}."""
    out = []
    for module, imports in sorted(statements.items()):
        parts = module.split(".")
        layer = parts[1] if len(parts) > 2 else None
        for source, names in imports:
            if source.split(".")[0] == "trl":
                if layer != "training":
                    out.append(f"{module}: imports {source} (only pgpo.training imports trl)")
                elif module not in BRIDGE and (source != "trl" or any(n.startswith("_") for n in names)):
                    out.append(f"{module}: imports {source} {names} (TRL beyond its public top level: "
                               f"only {' and '.join(BRIDGE)} may)")
            targets = {source} | {f"{source}.{n}" for n in names}
            if layer in WITHOUT_TRAINING and any(t.startswith("pgpo.training") for t in targets):
                out.append(f"{module}: imports the training package ({layer} runs without trl)")
            if module != "pgpo.cli" and "pgpo.cli" in targets:
                out.append(f"{module}: imports the CLI (argument parsing only; nothing builds on it)")
    return out


def test_the_stage_records_sit_below_every_stage():
    """pgpo.records is read by training, evaluation, tracking, results and the workflow: it imports only pgpo.util."""
    imports = {_module(p): {m for m, _ in _import_statements(p) if m.startswith("pgpo.")}
               for p in SOURCES if _module(p).startswith("pgpo.records")}
    assert set(imports) == {"pgpo.records.__init__", "pgpo.records.stages", "pgpo.records.layout"}
    assert all(m.startswith(("pgpo.util", "pgpo.records")) for found in imports.values() for m in found), imports


def test_the_package_keeps_its_layers():
    statements = {_module(p): _import_statements(p) for p in SOURCES}
    assert len(statements) > 80 and "pgpo.methods.shaping" in statements  # the whole tree, every depth
    assert layer_violations(statements) == []


def test_the_layer_check_sees_each_kind_of_violation():
    ok = {"pgpo.training.grpo_args": [("trl", ("GRPOConfig",))],
          "pgpo.training.trl_bridge": [("trl.trainer.utils", ("pad",))],
          "pgpo.testbed.measure": [("pgpo.training.blind_forward", ("blind_forward",))]}
    assert layer_violations(ok) == []
    bad = {"pgpo.methods.shaping": [("trl", ())],
           "pgpo.models.processor": [("pgpo.training", ("trl_bridge",))],
           "pgpo.training.dynamic_sampling": [("trl.trainer.utils", ("pad",))],
           "pgpo.training.run": [("trl", ("_private",))],
           "pgpo.diagnostics.smoke": [("pgpo.cli", ("main",))],
           "pgpo.evaluation.probe": [("trl", ("GRPOConfig",))]}
    assert [v.split(":")[0] for v in layer_violations(bad)] == sorted(bad)


def test_loading_every_method_and_planning_imports_no_trl():
    """What `snakemake -n` and a method YAML need (planning, configs, the registries) imports no trl and none of
    the training package, in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys\nimport pgpo.workflow.plan, pgpo.testbed.plan\n"
            "from pgpo.config.schema import available_methods, load_method\n"
            "from pgpo.methods.components import resolve_components\n"
            "[resolve_components(load_method(m)) for m in available_methods()]\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'trl' or m.startswith('pgpo.training'))\n"
            "print(len(sys.modules), bad)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, bad = proc.stdout.split(" ", 1)
    assert bad.strip() == "[]", bad
    assert int(n) < 1500, n  # with trl.trainer it was ~1,700


def test_the_package_has_a_version_and_an_init_in_every_sub_package():
    import re

    import pgpo

    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert pgpo.__version__ == declared and pgpo.__file__ == str(PACKAGE / "__init__.py")
    packages = {p.parent for p in SOURCES}
    assert not [str(d) for d in packages if not (d / "__init__.py").exists()]  # no implicit namespace package
