"""`pgpo` command line: one subcommand per stage (build-tiny, make-data, warm-start, train, methods)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _overrides(pairs: list[str]) -> dict:
    """--set a.b=1 --set c=x -> {'a': {'b': 1}, 'c': 'x'} (values parsed as YAML scalars)."""
    out: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"pgpo: --set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def cmd_build_tiny(a):
    from pgpo.tiny.model import TinyModelConfig, build_tiny

    out = build_tiny(a.out, TinyModelConfig(seed=a.seed))
    print(f"tiny Qwen2.5-VL written to {out}")


def cmd_make_data(a):
    from pgpo.tiny.make_data import make_data

    out = make_data(a.out, seed=a.seed, train_per_task=a.train_per_task, warmstart_per_task=a.warmstart_per_task,
                    eval_per_task=a.eval_per_task)
    print(f"synthetic data written to {out} (checksums in {out / 'MANIFEST.json'})")


def cmd_warm_start(a):
    from pgpo.config import build_dataclass
    from pgpo.warmstart import WarmStartConfig, warm_start

    raw = yaml.safe_load(Path(a.config).read_text()) if a.config else {}
    cfg = build_dataclass(WarmStartConfig, {**(raw or {}), **_overrides(a.set)}, a.config or "--set")
    report = warm_start(a.model, a.data, a.out, cfg)
    print(json.dumps(report["curve"][-1], indent=2))


def cmd_train(a):
    from pgpo.config import load_method, load_train_config
    from pgpo.train import train

    overrides = _overrides(a.set)
    if a.seed is not None:
        overrides["seed"] = a.seed
    cfg = load_train_config(a.config, overrides)
    method = load_method(a.method, _overrides(a.method_set))
    run = train(cfg, method, a.out)
    print(f"{method.name}: {run['global_steps']} steps in {run['wall_seconds']} s -> {Path(a.out) / 'final'}")


def cmd_probe(a):
    from pgpo.probe import probe, write_probe
    from pgpo.tiny.synthetic import TASKS

    tasks = a.tasks.split(",") if a.tasks else list(TASKS)
    result = probe(a.checkpoint, a.data, tasks, a.items_per_task, a.k, seed=a.seed)
    write_probe(result, a.out)
    for task, v in result["suites"].items():
        print(f"{task:9s} avg@{a.k} {v['avg_at_k']:.3f}  S(answer) {v['s_answer_mean']:.3f}  "
              f"S(other) {v['s_other_mean']:.3f}  above gate {v['share_above_gate']:.2f}")


def cmd_methods(a):
    from pgpo.config import available_methods, load_method

    for name in available_methods():
        m = load_method(name)
        print(f"{name:12s} shaper={m.shaper.name:9s} loss={m.loss.type:5s} dynamic_sampling="
              f"{m.dynamic_sampling.enabled!s:5s} {m.description}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgpo", description="PGPO reproduction harness: tiny Qwen2.5-VL on CPU, "
                                "Qwen2.5-VL-3B/7B on GPUs, same code.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("build-tiny", help="build the tiny Qwen2.5-VL offline (tokenizer, processor, model)")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_build_tiny)

    s = sub.add_parser("make-data", help="generate synthetic training data and evaluation suites")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train-per-task", type=int, default=500)
    s.add_argument("--warmstart-per-task", type=int, default=1500)
    s.add_argument("--eval-per-task", type=int, default=50)
    s.set_defaults(fn=cmd_make_data)

    s = sub.add_parser("warm-start", help="supervised warm start of the tiny model")
    s.add_argument("--model", required=True, help="checkpoint directory to start from")
    s.add_argument("--data", required=True, help="data directory made by make-data")
    s.add_argument("--out", required=True)
    s.add_argument("--config", help="YAML with WarmStartConfig fields")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a WarmStartConfig field")
    s.set_defaults(fn=cmd_warm_start)

    s = sub.add_parser("train", help="RL training of one method (resumes from the last checkpoint in --out)")
    s.add_argument("--method", required=True, help="a name in baselines/ or a method YAML path")
    s.add_argument("--config", default="workflows/config/train/tiny.yaml", help="training recipe YAML")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field, e.g. max_steps=5")
    s.add_argument("--method-set", action="append", metavar="KEY=VALUE",
                   help="override a method field, e.g. shaper.params.tau=0.2")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("probe", help="held-out avg@k and token visual dependency (answer vs other tokens)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--k", type=int, default=8, help="samples per question (avg@k)")
    s.add_argument("--items-per-task", type=int, default=50)
    s.add_argument("--tasks", help="comma-separated suites (default: all)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_probe)

    s = sub.add_parser("methods", help="list the methods in baselines/")
    s.set_defaults(fn=cmd_methods)

    a = p.parse_args(argv)
    from pgpo.config import ConfigError
    from pgpo.data import DataError

    try:
        a.fn(a)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"pgpo {a.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
