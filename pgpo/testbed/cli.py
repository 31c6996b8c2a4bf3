"""`pgpo testbed <step>`: the credit-assignment testbed's stages (the workflow's testbed rules run these).
Module-level imports stay light: the `pgpo` parser is built on every command."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _spec(text: str, what: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"pgpo testbed {what}: --spec is not JSON ({e})") from None
    if not isinstance(spec, dict):
        raise SystemExit(f"pgpo testbed {what}: --spec must be a JSON object")
    return spec


def cmd_data(a):
    from pgpo.testbed.data import make_testbed_data, parse_variants

    spec = _spec(a.spec, "data")
    try:
        variants = parse_variants(spec.get("variants"))
    except ValueError as e:
        raise SystemExit(f"pgpo testbed data: {e}") from None
    sizes = spec.get("data", {})
    out = make_testbed_data(a.out, a.model, variants, list(spec.get("skills", [])), seed=a.seed, **sizes)
    print(f"testbed data written to {out}")


def _model_folder(path: str, flag: str, step: str) -> None:
    """A model folder argument, before anything loads (transformers would read a missing path as a hub id)."""
    from pgpo.config.overrides import check_checkpoint
    from pgpo.config.schema import ConfigError

    try:
        check_checkpoint(path, flag, hub=False)
    except ConfigError as e:
        raise SystemExit(f"pgpo testbed {step}: {e}") from None


def _sets(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs (values as YAML scalars); pgpo.cli's own helper is not imported (no import circle)."""
    import yaml

    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"pgpo testbed: --set expects KEY=VALUE, got {bad[0]!r}")
    return {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}


def cmd_warm_start(a):
    from pgpo.testbed.warmstart import TestbedWarmStartConfig, testbed_warm_start
    from pgpo.config.yamlconf import build_dataclass

    _model_folder(a.model, "--model", "warm-start")
    raw = {**_sets(a.set), "variant": a.variant}
    try:
        cfg = build_dataclass(TestbedWarmStartConfig, raw, "--set")
    except ValueError as e:
        raise SystemExit(f"pgpo testbed warm-start: {e}") from None
    report = testbed_warm_start(a.model, a.data, a.out, cfg)
    print(json.dumps(report["curve"][-1], indent=2))


def cmd_gates(a):
    from pgpo.testbed.gates import GateFailed, GateSpec, run_gates
    from pgpo.testbed.warmstart import variant_length

    _model_folder(a.checkpoint, "--checkpoint", "gates")
    spec = _spec(a.spec, "gates")
    try:
        gate_spec = GateSpec(**spec)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"pgpo testbed gates: --spec: {e}") from None
    max_new = variant_length(a.data, a.variant) + 16
    gate_spec.extra = {**gate_spec.extra, "variant": a.variant}
    try:
        report = run_gates(a.checkpoint, a.data, max_new, gate_spec, a.report, a.out)
    except GateFailed as e:
        print(f"pgpo testbed gates: {e} (report: {a.report})", file=sys.stderr)
        raise SystemExit(3) from None
    for g in report["gates"]:
        print(f"  {g['name']:20s} {g['value']:.4f}  in {g['range']}")
    print(f"gates passed: {a.out}")


def cmd_record(a):
    from pgpo.testbed.records import run_record

    record = run_record(a.run, a.data, _spec(a.spec, "record"), a.out)
    print(json.dumps({k: record[k] for k in ("arm", "seed", "variant", "auc", "steps_to_gain", "forced_mean",
                                             "filler_entropy")}, indent=2))


def cmd_table(a):
    from pgpo.testbed.table import write_testbed_table

    paths = write_testbed_table(_spec(a.spec, "table"))
    print("\n".join(str(p) for p in paths))


def cmd_claims(a):
    from pgpo.testbed.claims import write_claims

    paths = write_claims(_spec(a.spec, "claims"))
    print(Path(paths[0]).read_text())


def add_testbed_commands(parser, formatter) -> None:
    """The `pgpo testbed` sub-subcommands on `parser` (the `testbed` subparser of pgpo.cli)."""
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def add(name: str, help: str):
        return sub.add_parser(name, help=help, description=help, formatter_class=formatter)

    s = add("data", "write the testbed's splits: RL prompts, held-out suites, one warm-start split per variant")
    s.add_argument("--model", required=True, help="the built tiny model (its tokenizer gives the filler words)")
    s.add_argument("--out", required=True, help="data folder to write")
    s.add_argument("--spec", required=True, help="JSON: {variants: {name: {filler, length}}, skills: [...], "
                   "data: {train_per_skill, warmstart_per_skill, eval_per_skill}}")
    s.add_argument("--seed", type=int, default=0, help="data seed")
    s.set_defaults(fn=cmd_data)

    s = add("warm-start", "supervised warm start of one variant (format, filler, skills, text-only mode)")
    s.add_argument("--model", required=True, help="base model folder")
    s.add_argument("--data", required=True, help="testbed data folder")
    s.add_argument("--variant", required=True, help="which warmstart_<variant>.jsonl")
    s.add_argument("--out", required=True, help="output model folder (warmstart.json inside)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TestbedWarmStartConfig field (steps, lr, batch_size, label_noise, text_only_share, ...)")
    s.set_defaults(fn=cmd_warm_start)

    s = add("gates", "measure a warm start and stop (exit 3) if a go/no-go gate fails")
    s.add_argument("--checkpoint", required=True, help="the warm-started model")
    s.add_argument("--data", required=True, help="testbed data folder")
    s.add_argument("--variant", required=True, help="the variant (its filler length bounds sampling)")
    s.add_argument("--spec", required=True, help="JSON of pgpo.testbed.gates.GateSpec")
    s.add_argument("--report", required=True, help="gate report JSON, written whether or not the gates pass")
    s.add_argument("--out", required=True, help="pass marker, written only if every gate holds")
    s.set_defaults(fn=cmd_gates)

    s = add("record", "one RL run's record: curves, area under the accuracy curve, steps to +gain, "
            "forced-answer accuracy per held-out question, final filler entropy")
    s.add_argument("--run", required=True, help="the `pgpo train --out` folder (run.json, metrics.jsonl, final/)")
    s.add_argument("--data", required=True, help="testbed data folder (held-out suites)")
    s.add_argument("--spec", required=True, help="JSON: {arm, seed, variant, curves, gain, block, forced}")
    s.add_argument("--out", required=True, help="record JSON to write")
    s.set_defaults(fn=cmd_record)

    s = add("table", "paired differences vs the reference arm, every seed's curve, MLflow")
    s.add_argument("--spec", required=True, help="JSON: {root, profile, records, reference, out, gates, ...}")
    s.set_defaults(fn=cmd_table)

    s = add("claims", "the paper's claims (variance reduction, collapse prevention, sparse dependency, learning) "
            "measured on finished records and gradient diagnostics, each with a verdict at the power achieved")
    s.add_argument("--spec", required=True, help="JSON: {arm, reference, records, diagnostics, diagnostic_arms, "
                   "diagnostic_reference, effects, curves, block, bootstrap, out[, root, experiment, profile]}")
    s.set_defaults(fn=cmd_claims)
