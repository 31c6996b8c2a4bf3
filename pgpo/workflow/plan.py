"""The workflow's plan: the jobs a target needs and the specs its tracking and table steps read.

Pure functions over the workflow config (workflows/config/*.yaml after `load_profile`: `extends` resolved, the
schema's defaults filled). The Snakemake rules only place what these return, and `check` validates the method
names and every recipe / evaluation / ablation override when the DAG is built, so a typo fails `snakemake -n`
instead of a job an hour later. Every path under config["root"] comes from its Layout (pgpo.records.layout).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pgpo.config.schema import ConfigError, available_methods, deep_merge, is_hub_id, load_method, load_train_config
from pgpo.config.yamlconf import load_yaml_text, nest_dotted, no_repeats
from pgpo.records.layout import ABLATION_RUN, Layout
from pgpo.records.stages import RUN_FILE
from pgpo.workflow.config_schema import SCHEMA, check_config, config_sources

TARGETS = ("table1", "table7", "ablation_thresholds")


# ---- config -------------------------------------------------------------------------------------------------
def resolve_extends(config: dict, config_dir: Path) -> dict:
    """A profile with `extends: other.yaml` is that profile with this one's keys merged over it (nested mappings
    merge, lists and scalars replace, a size set to null is dropped); command-line `--config` values are already in
    `config`, so they still win."""
    config = dict(config)
    parent = config.pop("extends", None)
    if parent is None:
        return config
    path = config_dir / parent
    if not path.exists():
        raise ConfigError(f"extends: {path} does not exist")
    base = resolve_extends(load_yaml_text(path.read_text(), str(path)) or {}, config_dir)
    merged = deep_merge(base, config)
    # `sizes: {7b: null}` drops a size of the parent (a profile for fewer GPUs keeps the sizes they hold)
    dropped = [size for size, spec in (config.get("sizes") or {}).items() if spec is None]
    unknown = sorted(set(dropped) - set(base.get("sizes") or {}))
    if unknown:
        raise ConfigError(f"extends: {path}: sizes {unknown} set to null, but {path.name} has no such size "
                          f"(its sizes: {list(base.get('sizes') or {})})")
    if dropped and isinstance(merged.get("sizes"), dict):
        merged["sizes"] = {k: v for k, v in merged["sizes"].items() if k not in dropped}
    return merged


def load_profile(path: str | Path, overrides: dict | None = None) -> dict:
    """A workflow profile as the Snakefile sees it: extends resolved, overrides on top, schema validated with its
    defaults filled in, then `check`ed (tests and tools; the Snakefile does the same steps on its `config`)."""
    from snakemake.utils import validate

    path = Path(path)
    config = deep_merge(load_yaml_text(path.read_text(), str(path)) or {}, overrides or {})
    config = resolve_extends(config, path.parent)
    check_config(config, config_sources([path], overrides, path.parent))  # one line per violation
    validate(config, str(SCHEMA))  # fills in the defaults
    check(config)
    return config


def render(value) -> str:
    """A config value as the command line writes it (`--set k=<this>`; booleans as YAML true/false)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def set_args(overrides: dict, flag: str = "--set") -> str:
    """{'a.b': 1} -> '--set a.b=1' (shell-quoted)."""
    return " ".join(f"{flag} {shlex.quote(f'{k}={render(v)}')}" for k, v in overrides.items())


def nest(overrides: dict) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}}, each value read back from its command-line form exactly as `pgpo` reads it."""
    return nest_dotted((key, yaml.safe_load(render(value))) for key, value in overrides.items())


def repo_path(repo: Path, p: str) -> str:
    """Config paths are relative to the repository, whatever the working directory."""
    return str(p) if Path(p).is_absolute() else str(Path(repo) / p)


# ---- what runs ----------------------------------------------------------------------------------------------
def methods(config: dict) -> list[str]:
    """The Table 1 methods: every baselines/*.yaml for 'all', else the list given."""
    return available_methods() if config["methods"] == "all" else list(config["methods"])


def layout(config: dict) -> Layout:
    return Layout(config["root"])


def start_model(config: dict, size: str) -> str:
    return config["sizes"][size]["model"].format(root=config["root"])


RELEASED_RUN = "released-"
"""Evaluation directory prefix of a published checkpoint's row: eval/<size>/released-<name>."""


def released(config: dict) -> dict[str, list[dict]]:
    """size -> the published checkpoints evaluated as rows beside its base row (`released:` in the profile), their
    `model` with {root} filled in."""
    given = config.get("released") or {}
    return {size: [{**e, "model": e["model"].format(root=config["root"])} for e in given.get(size) or []]
            for size in config["sizes"]}


def check_released(config: dict) -> None:
    """Each released entry under a size of the profile, named once per size, and pinned when it is a hub id."""
    for size, entries in (config.get("released") or {}).items():
        if size not in config["sizes"]:
            raise ConfigError(f"released.{size}: not a size of this profile (sizes: {list(config['sizes'])})")
        names = [e["name"] for e in entries or []]
        if len(set(names)) < len(names):
            raise ConfigError(f"released.{size}: a name repeats ({names}): each is one table row")
        for e in entries or []:
            if is_hub_id(e["model"]) and not e.get("revision"):
                raise ConfigError(f"released.{size}.{e['name']}: hub model {e['model']} needs `revision:` (the "
                                  "40-hex commit evaluated: the row must not move when the hub repository does)")


def released_entry(config: dict, size: str, run: str) -> dict | None:
    """The `released:` entry an evaluation directory name `released-<name>` stands for (None for other runs)."""
    if not run.startswith(RELEASED_RUN):
        return None
    name = run[len(RELEASED_RUN):]
    return next((e for e in released(config).get(size, []) if e["name"] == name), None)


def start_rows(config: dict, size: str) -> dict[str, str]:
    """Row label -> evaluation directory of the rows no training here produced: the base model, then each released
    checkpoint ("<name> (released)")."""
    rows = {run_label(config, size, "base"): layout(config).eval(size, "base")}
    for e in released(config)[size]:
        rows[run_label(config, size, f"{e['name']} (released)")] = layout(config).eval(size, RELEASED_RUN + e["name"])
    return rows


def ablation_grid(config: dict, repo: Path) -> dict[str, dict]:
    """variant -> its method overrides ({'shaper.params.tau': '0.4', ...}), from the grid TSV whose columns are
    `variant` and dotted paths into the ablated method's YAML (any method's parameters can be ablated)."""
    if "ablation" not in config:
        return {}
    path = Path(repo_path(repo, config["ablation"]["grid"]))
    rows = list(csv.DictReader(path.read_text().splitlines(), delimiter="\t"))
    if not rows or "variant" not in rows[0]:
        raise ConfigError(f"{path}: needs a header row with a `variant` column and one dotted method path per column")
    grid = {}
    for i, row in enumerate(rows, start=2):
        variant = row.pop("variant")
        if not variant or "/" in variant or variant in grid:
            raise ConfigError(f"{path}:{i}: variant {variant!r} is empty, has a '/', or repeats")
        grid[variant] = row
    return grid


@dataclass(frozen=True)
class Training:
    """One training job: where it writes and what MLflow labels it with."""

    name: str  # '<size>/<method>-s<seed>' or '<size>/<variant>/s<seed>' (unique within the profile)
    run_dir: str  # the `pgpo train --out` directory
    size: str
    method: str
    seed: int
    variant: str | None = None  # ablation grid row (None for Table 1 runs)

    def labels(self) -> dict:
        out = {"size": self.size, "method": self.method, "seed": self.seed}
        return {**out, "variant": self.variant} if self.variant is not None else out


def table_methods(config: dict, target: str) -> list[str]:
    return methods(config) if target == "table1" else list(config["table7"])


def trainings(config: dict, target: str, repo: Path) -> list[Training]:
    """Every training run a target's table reads."""
    where = layout(config)
    if target in ("table1", "table7"):
        keep = table_methods(config, target)
        return [Training(f"{size}/{m}-s{s}", where.run(size, m, s), size, m, s)
                for size in config["sizes"] for m in keep for s in config["seeds"]]
    method = config["ablation"]["method"]
    return [Training(f"{size}/{v}/s{s}", where.ablation_run(size, v, s), size, method, s, v)
            for size in config["sizes"] for v in ablation_grid(config, repo) for s in config["ablation"]["seeds"]]


def run_label(config: dict, size: str, name: str) -> str:
    return name if len(config["sizes"]) == 1 else f"{size} {name}"


def table_rows(config: dict, target: str, repo: Path) -> dict[str, list[str]]:
    """Row label -> evaluation directories (one per seed), in table order: base first, then the runs."""
    rows = {}
    if target in ("table1", "table7"):
        for size in config["sizes"]:
            rows.update({label: [d] for label, d in start_rows(config, size).items()})
    for t in trainings(config, target, repo):
        rows.setdefault(run_label(config, t.size, t.variant or t.method), []).append(eval_dir_of(config, t))
    return rows


def row_trainings(config: dict, target: str, repo: Path) -> dict[str, list[Training | None]]:
    """Row label -> the training of each of its evaluation directories (table_rows' order); None for the start
    model's one evaluation."""
    out: dict[str, list[Training | None]] = {}
    if target in ("table1", "table7"):
        for size in config["sizes"]:
            out.update({label: [None] for label in start_rows(config, size)})
    for t in trainings(config, target, repo):
        out.setdefault(run_label(config, t.size, t.variant or t.method), []).append(t)
    return out


def row_seeds(config: dict, target: str, repo: Path) -> dict[str, list[int | None]]:
    """Row label -> the training seed of each of its evaluation directories; None for the start model."""
    rows = row_trainings(config, target, repo)
    return {label: [t.seed if t else None for t in ts] for label, ts in rows.items()}


def row_runs(config: dict, target: str, repo: Path) -> dict[str, list[str | None]]:
    """Row label -> the training directory of each of its evaluation directories; None for the start model: the
    runs a row came from, so no reader walks back from evaluation files."""
    rows = row_trainings(config, target, repo)
    return {label: [t.run_dir if t else None for t in ts] for label, ts in rows.items()}


def curve_runs(config: dict, target: str, repo: Path) -> dict[str, dict[str, str]]:
    """Row label -> seed (as text: a JSON key) -> training run directory (its metrics.jsonl holds the curves)."""
    out: dict[str, dict[str, str]] = {}
    for t in trainings(config, target, repo):
        out.setdefault(run_label(config, t.size, t.variant or t.method), {})[str(t.seed)] = t.run_dir
    return out


def reference_name(config: dict, target: str) -> str | None:
    """The reference row of a target's difference view as the config names it (a method, or an ablation variant)."""
    return (config.get("paired") or {}).get("reference", {}).get(target)


def reference_rows(config: dict, target: str, repo: Path) -> tuple[dict[str, str], str]:
    """(row label -> its reference row's label, a note): every row is compared with the reference row of its own
    model size; the reference rows are left out. The note says why there is no comparison when the reference is
    not a row of this table (e.g. `methods` leaves it out), instead of a silently empty view."""
    name = reference_name(config, target)
    if not name:
        return {}, f"no reference row configured (paired.reference.{target}): no differences"
    rows = table_rows(config, target, repo)
    sizes = {label: size for size in config["sizes"] for label in start_rows(config, size)} \
        if target != "ablation_thresholds" else {}
    for t in trainings(config, target, repo):
        sizes[run_label(config, t.size, t.variant or t.method)] = t.size
    out, absent = {}, []
    for label in rows:
        ref = run_label(config, sizes[label], name)
        if ref not in rows:
            absent.append(ref)
        elif ref != label:
            out[label] = ref
    note = ""
    if absent:
        note = (f"reference row {sorted(set(absent))} (paired.reference.{target}: {name!r}) is not a row of this "
                f"table (rows: {list(rows)}): no differences for its model size")
    return out, note


def eval_dir_of(config: dict, t: Training) -> str:
    run = f"{t.method}-s{t.seed}" if t.variant is None else f"{ABLATION_RUN}{t.variant}/s{t.seed}"
    return layout(config).eval(t.size, run)


def checkpoint_marker(config: dict, size: str, run: str) -> list[str]:
    """The file whose existence means the checkpoint an evaluation directory `eval/<size>/<run>` reads is done."""
    where = layout(config)
    if run == "base":
        return [f"{where.model('warmstart')}/warmstart.json"] if config["build_tiny"] else []
    entry = released_entry(config, size, run)
    if entry is not None:  # a local snapshot must exist (Snakemake names it); a hub id is fetched by the job
        return [] if is_hub_id(entry["model"]) else [f"{entry['model']}/config.json"]
    return [f"{where.trained_run(size, run)}/{RUN_FILE}"]


def checkpoint_dir(config: dict, size: str, run: str) -> str:
    entry = released_entry(config, size, run)
    if entry is not None:
        return entry["model"]
    return start_model(config, size) if run == "base" else str(Path(checkpoint_marker(config, size, run)[0]).parent / "final")


def checkpoint_revision(config: dict, size: str, run: str) -> str | None:
    """The hub commit an evaluation loads: sizes.<size>.revision for the base row, the entry's for a released one."""
    entry = released_entry(config, size, run)
    if entry is not None:
        return entry.get("revision")
    return config["sizes"][size].get("revision") if run == "base" else None


def benchmarks(config: dict) -> list[str]:
    """Benchmark names the evaluation shards cover, in table order."""
    from pgpo.evaluation.benchmarks import resolve

    return [b.name for b in resolve(config["eval_shards"])]


def target_inputs(config: dict, target: str, repo: Path) -> list[str]:
    dirs = [d for ds in table_rows(config, target, repo).values() for d in ds]
    return [f"{t.run_dir}/run.json" for t in trainings(config, target, repo)] + \
        [f"{d}/shard-{s}.json" for d in dirs for s in config["eval_shards"]]


# ---- specs of the tracking and table steps ------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))  # key order is meaning: rows are in table order

    @classmethod
    def from_json(cls, text: str):
        """Parse a spec, naming any missing or unknown field (the spec crosses a process boundary)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cls.__name__}: not JSON ({e})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not isinstance(raw, dict) or set(raw) - names or required - set(raw):
            got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ConfigError(f"{cls.__name__}: fields {got}; expected {sorted(names)} (required {sorted(required)})")
        return cls(**raw)


@dataclass(frozen=True)
class TrackSpec(_Spec):
    """What `pgpo track` mirrors into MLflow experiment <profile>/<target>."""

    root: str
    target: str
    benchmarks: list[str]
    trainings: dict[str, str]  # name -> training run directory
    evaluations: dict[str, str]  # eval directory relative to root -> directory
    labels: dict[str, dict] = field(default_factory=dict)  # training name -> {size, method, seed[, variant]}


@dataclass(frozen=True)
class TableSpec(_Spec):
    """What `pgpo table` writes (<out>.md/.csv/.png and figures) and reads."""

    root: str
    target: str
    title: str
    rows: dict[str, list[str]]  # row label -> evaluation directories, one per seed
    benchmarks: list[str]
    average_over: list[str]
    tracking: str  # the `pgpo track` output of this target (MLflow run ids)
    out: str  # output path without extension
    trainings: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict] = field(default_factory=dict)
    warmstart: str | None = None  # warmstart.json of the tiny profile's start model
    figures: dict[str, str] = field(default_factory=dict)  # kind -> file (pgpo.results.figures draws exactly these)
    seeds: dict[str, list] = field(default_factory=dict)  # row label -> seed of each evaluation dir (None: start)
    reference: dict[str, str] = field(default_factory=dict)  # row label -> its reference row (difference view)
    reference_note: str = ""  # why a row has no reference, when one is missing
    curve_runs: dict[str, dict[str, str]] = field(default_factory=dict)  # row -> seed -> training run directory
    paired: dict = field(default_factory=dict)  # the config's `paired` block: bootstrap, curves, curve_block
    row_runs: dict[str, list] = field(default_factory=dict)  # row -> training dir of each evaluation (None: start)
    note: str = ""  # the config's table_note, shown under every table's title (quick: a plumbing check)


def track_spec(config: dict, target: str, repo: Path) -> TrackSpec:
    runs = trainings(config, target, repo)
    root = config["root"]
    evals = {str(Path(d).relative_to(root)): d for ds in table_rows(config, target, repo).values() for d in ds}
    return TrackSpec(root, target, benchmarks(config), {t.name: t.run_dir for t in runs}, evals,
                     {t.name: t.labels() for t in runs})


def table_spec(config: dict, target: str, repo: Path) -> TableSpec:
    runs, root, where = trainings(config, target, repo), config["root"], layout(config)
    warm = checkpoint_marker(config, next(iter(config["sizes"])), "base")
    reference, note = reference_rows(config, target, repo)
    paired = {k: v for k, v in (config.get("paired") or {}).items() if k != "reference"}
    return TableSpec(root, target, title(config, target), table_rows(config, target, repo), benchmarks(config),
                     list(config["average_over"]), where.tracking(target), where.target(target),
                     {t.name: t.run_dir for t in runs}, {t.name: t.labels() for t in runs}, (warm or [None])[0],
                     figure_files(config, target), row_seeds(config, target, repo), reference, note,
                     curve_runs(config, target, repo), paired, row_runs(config, target, repo),
                     config.get("table_note", ""))


def diff_files(config: dict, target: str) -> dict[str, str]:
    """The difference view's files a table step writes (pgpo.results.paired_tables): kind -> path."""
    return {f"diff_{ext}": layout(config).target(target, f"diff.{ext}") for ext in ("md", "csv", "json")}


def figure_files(config: dict, target: str) -> dict[str, str]:
    """Kind -> file of the figures a target's table step draws (pgpo.results.figures): the training curves always; an
    ablation's heatmap instead of the per-benchmark bars; Table 1 also the shared warm start's curve."""
    where = layout(config)
    files = {"curves": where.target(target, "curves.png")}
    if target == "ablation_thresholds":
        files["heatmap"] = where.target(target, "heatmap.png")
    else:
        files["bars"] = where.target(target, "png")
    if target == "table1" and config["build_tiny"]:
        files["warmstart"] = where.target("warmstart", "png")
    return files


def title(config: dict, target: str) -> str:
    profile = config["profile"]
    return {"table1": f"Table 1 ({profile} profile)", "table7": f"Table 7: PGPO on GRPO ({profile} profile)",
            "ablation_thresholds": f"Threshold and modulation ablation ({profile} profile)"}[target]


# ---- validation when the DAG is built -------------------------------------------------------------------------
def _known_method(name: str, where: str, known: list[str]) -> None:
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown method {name!r} (no baselines/{name}.yaml); known: {known}{hint}")


def check(config: dict, repo: Path | None = None) -> None:
    """Everything a job would reject later, checked now: method names (methods, table7, ablation.method), the
    recipe overrides (train_set) against every (size, method) recipe, the evaluation overrides (eval_set), and each
    ablation grid row against the ablated method. Loads YAML only, no model."""
    from pgpo.evaluation.config import load_eval_config

    repo = Path(repo) if repo is not None else SCHEMA.parent.parent.parent
    for key in ("seeds", "methods", "table7", "eval_shards", "average_over", "ablation.seeds"):
        section, _, field = key.rpartition(".")
        no_repeats((config.get(section) or {}) if section else config, field, key)
    known = available_methods()
    if config["methods"] != "all":
        for m in config["methods"]:
            _known_method(m, "methods", known)
    for m in config["table7"]:
        _known_method(m, "table7", known)
    check_released(config)
    from pgpo.models.recipe_plan import check_fits
    run_methods = sorted(set(methods(config)) | set(config["table7"]))
    for size, spec in config["sizes"].items():
        recipe = repo_path(repo, spec["train_config"])
        if not Path(recipe).exists():
            raise ConfigError(f"sizes.{size}.train_config: {recipe} does not exist")
        for m in run_methods:
            try:
                cfg = load_train_config(recipe, nest(config["train_set"]), load_method(m))
            except ConfigError as e:
                raise ConfigError(f"train_set {config['train_set']} on {m} ({size}): {e}") from None
            cfg.model.path = start_model(config, size)  # what the job trains (--set model.path)
            check_fits(cfg, config["resources"]["train"], f"sizes.{size}.train_config {recipe} ({m})",
                       config["launch"]["train"], m)
    try:
        load_eval_config(repo_path(repo, config["eval_config"]), nest(config["eval_set"]))
    except ConfigError as e:
        raise ConfigError(f"eval_set {config['eval_set']}: {e}") from None
    if "ablation" in config:
        method = config["ablation"]["method"]
        _known_method(method, "ablation.method", known)
        for variant, overrides in ablation_grid(config, repo).items():
            try:
                load_method(method, nest(overrides))
            except ConfigError as e:
                raise ConfigError(f"{config['ablation']['grid']}: variant {variant!r}: {e}") from None
    for target, name in ((config.get("paired") or {}).get("reference") or {}).items():
        if target not in TARGETS:
            raise ConfigError(f"paired.reference.{target}: unknown target (known: {list(TARGETS)})")
        if target == "ablation_thresholds":
            if "ablation" not in config:
                continue  # no ablation in this profile: nothing to compare
            variants = list(ablation_grid(config, repo))
            # a method name that is no variant (the schema default with a grid of other names) is said in the
            # view's note, like a method left out of `methods`; anything else is a typo
            if name not in variants and name not in known:
                close = difflib.get_close_matches(name, variants, n=1)
                raise ConfigError(f"paired.reference.{target}: {name!r} is not a variant of the ablation grid "
                                  f"{variants}" + (f"; did you mean {close[0]!r}?" if close else ""))
        else:
            _known_method(name, f"paired.reference.{target}", known)
    report = config.get("dependency_report")
    if report and report.get("size") not in config["sizes"]:
        raise ConfigError(f"dependency_report.size: {report.get('size')!r} is not one of {list(config['sizes'])}")
