"""The credit_testbed target's plan: which runs, and the specs its rules pass to `pgpo testbed ...`.

Pure functions of the workflow config's `testbed` section (workflows/config/testbed.yaml). Arms, the reference
arm, variants and seeds all come from there: nothing here knows a method. Layout under <root>/testbed/:

    data/                                   the suites (pgpo testbed data)
    <variant>/warmstart/                    the variant's warm start (model folder + warmstart.json)
    <variant>/gate_report.json, gates.json  the gates' measurements; gates.json only when they pass
    <variant>/runs/<arm>-s<seed>/           an RL run (pgpo train --out)
    <variant>/records/<arm>-s<seed>.json    its record
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from pgpo.config.schema import ConfigError
from pgpo.config.yamlconf import no_repeats

SECTION_KEYS = {"skills", "variants", "data", "warmstart", "gates", "gate_overrides", "arms", "reference", "runs",
                "train_config", "train_set", "curves", "accuracy_curve", "gain", "block", "forced", "bootstrap",
                "core", "claims"}
TABLES = {"full": "credit_testbed", "core": "credit_testbed_core"}  # table -> its files' name under <root>/
CLAIMS = "credit_testbed_claims"  # the claims table's files' name under <root>/
CLAIMS_KEYS = {"arm", "diagnostic", "effects"}
DIAGNOSTIC_KEYS = {"at", "arms", "reference", "groups"}
EFFECTS = {"noise_scale_ratio", "entropy_fall", "filler_entropy", "answer_share", "answer_share_gain",
           "forced_answer", "auc"}


def section(config: dict) -> dict:
    if "testbed" not in config:
        raise ConfigError("the credit_testbed target needs a `testbed` section (workflows/config/testbed.yaml)")
    return config["testbed"]


def base(config: dict) -> str:
    from pgpo.records.layout import Layout

    return Layout(config["root"]).testbed


def runs(config: dict) -> list[tuple[str, str, int]]:
    """Every (variant, arm, seed) RL run, in config order. Every arm of a variant shares its seeds."""
    tb = section(config)
    return [(v, arm, int(seed)) for v, spec in tb["runs"].items() for arm in spec["arms"] for seed in spec["seeds"]]


def core_runs(config: dict) -> list[tuple[str, str, int]]:
    """The confirmatory core (testbed.core = {variant, arms}): those arms of one variant, at the variant's seeds."""
    tb = section(config)
    core = tb["core"]
    return [(core["variant"], arm, int(seed)) for arm in core["arms"] for seed in tb["runs"][core["variant"]]["seeds"]]


def variants(config: dict) -> list[str]:
    return list(section(config)["runs"])


def filler_length(config: dict, variant: str) -> int:
    return int(section(config)["variants"][variant]["length"])


def data_spec(config: dict) -> str:
    tb = section(config)
    return json.dumps({"variants": tb["variants"], "skills": tb["skills"], "data": tb.get("data", {})})


def gate_spec(config: dict, variant: str) -> str:
    """The GateSpec JSON of a variant: testbed.gates with testbed.gate_overrides.<variant> over its thresholds."""
    tb = section(config)
    gates = copy.deepcopy(tb["gates"])
    gates["thresholds"] = {**gates.get("thresholds", {}), **tb.get("gate_overrides", {}).get(variant, {})}
    return json.dumps(gates)


def method_of(config: dict, arm: str) -> str:
    return section(config)["arms"][arm]


def record_path(config: dict, variant: str, arm: str, seed: int) -> str:
    return f"{base(config)}/{variant}/records/{arm}-s{seed}.json"


def record_spec(config: dict, variant: str, arm: str, seed: int) -> str:
    tb = section(config)
    return json.dumps({"arm": arm, "seed": int(seed), "variant": variant, "curves": tb["curves"],
                       "accuracy_curve": tb["accuracy_curve"], "gain": tb["gain"], "block": tb["block"],
                       "forced": tb["forced"]})


def table_runs(config: dict, table: str = "full") -> list[tuple[str, str, int]]:
    return core_runs(config) if table == "core" else runs(config)


def table_spec(config: dict, table: str = "full") -> str:
    tb = section(config)
    root = config["root"]
    chosen = table_runs(config, table)
    return json.dumps({
        "root": root, "profile": config["profile"], "reference": tb["reference"], "out": f"{root}/{TABLES[table]}",
        "records": [record_path(config, v, a, s) for v, a, s in chosen],
        "gate_reports": {v: f"{base(config)}/{v}/gate_report.json" for v in dict.fromkeys(v for v, _, _ in chosen)},
        "bootstrap": tb.get("bootstrap", 10000), "curves": list(tb["curves"]),
        "accuracy_curve": tb["accuracy_curve"]})


def table_outputs(config: dict, table: str = "full") -> dict[str, str]:
    out = f"{config['root']}/{TABLES[table]}"
    return {"md": f"{out}.md", "csv": f"{out}.csv", "html": f"{out}.html", "curves": f"{out}.curves.png",
            "tracking": f"{out}.tracking.json"}


# ---------------------------------------------------------------- claims (item 4): diagnostics + claims table
def claims(config: dict) -> dict | None:
    """testbed.claims, or None: the claims are measured on the core's variant (testbed.core)."""
    return section(config).get("claims")


def diagnostic_points(config: dict) -> list[str]:
    """Where the gradient diagnostic runs: `warmstart` or an RL run `<arm>-s<seed>` of the core's variant."""
    c = claims(config)
    return [str(a) for a in c["diagnostic"]["at"]] if c else []


def diagnostic_path(config: dict, at: str) -> str:
    return f"{base(config)}/{section(config)['core']['variant']}/diagnostic/{at}/gradient_diagnostic.json"


def diagnostic_input(config: dict, at: str) -> str:
    """The file whose existence means the checkpoint at `at` is ready (the gates' pass marker, a run's run.json)."""
    variant = section(config)["core"]["variant"]
    return f"{base(config)}/{variant}/gates.json" if at == "warmstart" else f"{base(config)}/{variant}/runs/{at}/run.json"


def diagnostic_checkpoint(config: dict, at: str) -> str:
    """The model folder diagnosed: the warm start, or the run's last checkpoint-N (its optimizer.pt gives Adam's
    second moments) when train_set.save_steps divides max_steps, else its final/ (no moments: the report says)."""
    tb = section(config)
    variant = tb["core"]["variant"]
    if at == "warmstart":
        return f"{base(config)}/{variant}/warmstart"
    ts = tb.get("train_set", {})
    steps, every = ts.get("max_steps"), ts.get("save_steps")
    last = f"checkpoint-{steps}" if steps and every and int(steps) % int(every) == 0 else "final"
    return f"{base(config)}/{variant}/runs/{at}/{last}"


def diagnostic_methods(config: dict) -> tuple[list[str], str]:
    """(method specs of the diagnosed arms, the reference arm's method spec) as given in testbed.arms."""
    d = claims(config)["diagnostic"]
    return [method_of(config, a) for a in d["arms"]], method_of(config, d["reference"])


def claims_outputs(config: dict) -> dict[str, str]:
    out = f"{config['root']}/{CLAIMS}"
    return {"md": f"{out}.md", "json": f"{out}.json", "html": f"{out}.html"}


def claims_records(config: dict) -> list[str]:
    tb = section(config)
    chosen = {tb["reference"], claims(config)["arm"]}
    return [record_path(config, v, a, s) for v, a, s in core_runs(config) if a in chosen]


def claims_spec(config: dict) -> str:
    tb, c = section(config), claims(config)
    d = c["diagnostic"]
    root = config["root"]
    return json.dumps({
        "arm": c["arm"], "reference": tb["reference"], "records": claims_records(config),
        "diagnostics": {at: diagnostic_path(config, at) for at in diagnostic_points(config)},
        "diagnostic_arms": list(d["arms"]), "diagnostic_reference": d["reference"], "effects": c["effects"],
        "curves": {"entropy": c.get("entropy_curve", "entropy_non_answer"),
                   "answer_share": c.get("answer_share_curve", "answer_share")},
        "block": tb["block"], "bootstrap": tb.get("bootstrap", 10000), "out": f"{root}/{CLAIMS}", "root": root,
        "profile": config["profile"], "experiment": f"{Path(root).name}/{TABLES['core']}"})


def _check_claims(tb: dict) -> None:
    c = tb["claims"]
    if "core" not in tb:
        raise ConfigError("testbed.claims: needs testbed.core (the claims are measured on the core's variant)")
    if not isinstance(c, dict) or set(c) - (CLAIMS_KEYS | {"entropy_curve", "answer_share_curve"}) \
            or CLAIMS_KEYS - set(c):
        raise ConfigError(f"testbed.claims: expected keys {sorted(CLAIMS_KEYS)} (+ entropy_curve, "
                          f"answer_share_curve), got {sorted(c) if isinstance(c, dict) else c!r}")
    if c["arm"] not in tb["core"]["arms"] or c["arm"] == tb["reference"]:
        raise ConfigError(f"testbed.claims.arm: {c['arm']!r} must be a core arm other than the reference")
    d = c["diagnostic"]
    if not isinstance(d, dict) or set(d) != DIAGNOSTIC_KEYS:
        raise ConfigError(f"testbed.claims.diagnostic: expected keys {sorted(DIAGNOSTIC_KEYS)}, got {d!r}")
    unknown = [a for a in [*d["arms"], d["reference"]] if a not in tb["arms"]]
    if unknown:
        raise ConfigError(f"testbed.claims.diagnostic: arm(s) {unknown} not in testbed.arms {sorted(tb['arms'])}")
    if c["arm"] not in d["arms"] or tb["reference"] not in d["arms"]:
        raise ConfigError(f"testbed.claims.diagnostic.arms: must include {c['arm']!r} and {tb['reference']!r}")
    core = {f"{a}-s{s}" for a in tb["core"]["arms"] for s in tb["runs"][tb["core"]["variant"]]["seeds"]}
    bad = [a for a in d["at"] if a != "warmstart" and a not in core]
    if bad or not d["at"]:
        raise ConfigError(f"testbed.claims.diagnostic.at: {bad or 'none'}; each is `warmstart` or a core run "
                          f"<arm>-s<seed> ({sorted(core)})")
    if not isinstance(d["groups"], int) or d["groups"] < 4:
        raise ConfigError(f"testbed.claims.diagnostic.groups: an integer >= 4, got {d['groups']!r}")
    eff = c["effects"]
    if not isinstance(eff, dict) or set(eff) != EFFECTS:
        raise ConfigError(f"testbed.claims.effects: expected {sorted(EFFECTS)}, got "
                          f"{sorted(eff) if isinstance(eff, dict) else eff!r}")
    if eff["noise_scale_ratio"] <= 1 or min(v for k, v in eff.items() if k != "noise_scale_ratio") <= 0:
        raise ConfigError(f"testbed.claims.effects: noise_scale_ratio > 1 and every other effect > 0, got {eff}")


def check(config: dict, repo: Path) -> None:
    """Everything a testbed job would reject later, named now (no model loads)."""
    from pgpo.config.schema import load_method
    from pgpo.testbed.data import parse_variants
    from pgpo.testbed.gates import GateSpec

    tb = section(config)
    unknown = sorted(set(tb) - SECTION_KEYS)
    if unknown:
        raise ConfigError(f"testbed: unknown key(s) {unknown}; known: {sorted(SECTION_KEYS)}")
    try:
        declared = parse_variants(tb.get("variants"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for arm, method in tb["arms"].items():
        try:
            load_method(str(repo / method) if method.endswith((".yaml", ".yml")) else method)
        except ConfigError as e:
            raise ConfigError(f"testbed.arms.{arm}: {e}") from None
    for variant, spec in tb["runs"].items():
        if variant not in declared:
            raise ConfigError(f"testbed.runs.{variant}: not a declared variant ({sorted(declared)})")
        bad = [a for a in spec.get("arms", []) if a not in tb["arms"]]
        if bad or not spec.get("arms"):
            raise ConfigError(f"testbed.runs.{variant}.arms: {bad or 'none'} not in testbed.arms {sorted(tb['arms'])}")
        if tb["reference"] not in spec["arms"]:
            raise ConfigError(f"testbed.runs.{variant}: the reference arm {tb['reference']!r} is not among its arms")
        if not spec.get("seeds"):
            raise ConfigError(f"testbed.runs.{variant}.seeds: at least one seed")
        for field in ("seeds", "arms"):
            no_repeats(spec, field, f"testbed.runs.{variant}.{field}")
    core = tb.get("core")
    if core is not None:
        if not isinstance(core, dict) or set(core) != {"variant", "arms"}:
            raise ConfigError(f"testbed.core: expected {{variant, arms}}, got {core!r}")
        if core["variant"] not in tb["runs"]:
            raise ConfigError(f"testbed.core.variant: {core['variant']!r} has no runs ({sorted(tb['runs'])})")
        missing = [a for a in core["arms"] if a not in tb["runs"][core["variant"]]["arms"]]
        if missing or tb["reference"] not in core["arms"]:
            raise ConfigError(f"testbed.core.arms: {missing or core['arms']} must be arms of runs.{core['variant']} "
                              f"and include the reference {tb['reference']!r}")
    if "claims" in tb:
        _check_claims(tb)
    for variant in list(tb.get("gate_overrides", {})):
        if variant not in declared:
            raise ConfigError(f"testbed.gate_overrides.{variant}: not a declared variant")
    for variant in tb["runs"]:
        try:
            GateSpec(**json.loads(gate_spec(config, variant)))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"testbed.gates ({variant}): {e}") from None
    if tb["accuracy_curve"] not in tb["curves"]:
        raise ConfigError(f"testbed.accuracy_curve {tb['accuracy_curve']!r} is not a key of testbed.curves")
    recipe = Path(repo, tb["train_config"])
    if not recipe.exists():
        raise ConfigError(f"testbed.train_config: {tb['train_config']} does not exist")
    from pgpo.config.schema import load_train_config
    from pgpo.workflow.plan import nest

    for arm, method in tb["arms"].items():
        spec = str(repo / method) if method.endswith((".yaml", ".yml")) else method
        try:
            load_train_config(recipe, nest(tb.get("train_set", {})), load_method(spec))
        except ConfigError as e:
            raise ConfigError(f"testbed.train_set {tb.get('train_set')} on arm {arm}: {e}") from None
