"""`pgpo power` and `pgpo gradient-diagnostic`: statistics over finished targets and checkpoints (issue 21),
registered on the main parser by pgpo.cli.build_parser."""

from __future__ import annotations

from pathlib import Path

from pgpo.config.overrides import _overrides, check_checkpoint


def cmd_gradient_diagnostic(a):
    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.gradient_diagnostic import diagnose

    check_checkpoint(a.checkpoint, "--checkpoint", hub=False)
    methods = [load_method(m) for m in a.method]
    reference = load_method(a.reference).name
    if reference not in [m.name for m in methods]:
        methods.append(load_method(a.reference))
    overrides = {**_overrides(a.set), "model": {"path": a.checkpoint}, "data": {"train": a.data}}
    cfg = load_train_config(a.config, overrides)
    result = diagnose(cfg, methods, reference, a.groups, Path(a.out), seed=a.seed, bootstrap=a.bootstrap,
                      max_memory_gb=a.max_memory_gb)
    print((Path(a.out) / "gradient_diagnostic.md").read_text())
    return result


def cmd_power(a):
    from pgpo.results.power import report

    print(report(a.target, a.difference, a.alpha, a.power), end="")


def add_analysis_commands(add) -> None:
    """Register the commands with `add(name, help) -> ArgumentParser` (pgpo.cli.build_parser's helper)."""
    s = add("power", "variance components of a finished target's paired comparisons and the seeds / questions / "
            "samples needed to detect a difference")
    s.add_argument("--target", required=True, help="<root>/<target>, e.g. results/tiny/table1 (reads its "
                   ".diff.json and the per-sample results it names)")
    s.add_argument("--difference", type=float, required=True, help="the difference to detect, as a fraction "
                   "(0.02 = 2 points)")
    s.add_argument("--alpha", type=float, default=0.05, help="two-sided level")
    s.add_argument("--power", type=float, default=0.8, help="power")
    s.set_defaults(fn=cmd_power)

    s = add("gradient-diagnostic", "per-group gradients of several methods on the same rollouts of one checkpoint: "
            "signal, noise, noise scale, split-half agreement, alignment with a reference (raw and Adam)")
    s.add_argument("--checkpoint", required=True, help="model folder (a training checkpoint-N/ also gives its Adam "
                   "second moments)")
    s.add_argument("--data", required=True, help="the split whose prompts are rolled out (train.jsonl)")
    s.add_argument("--method", action="append", required=True, help="a method (name in baselines/ or YAML path); "
                   "repeat for each estimator")
    s.add_argument("--reference", required=True, help="the method the others are aligned with (added if not "
                   "among --method), e.g. baselines/variants/dapo_oracle.yaml")
    s.add_argument("--groups", type=int, default=16, help="prompt groups with reward signal to collect")
    s.add_argument("--config", default="workflows/config/train/tiny.yaml", help="training recipe YAML (rollout "
                   "and loss settings)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field")
    s.add_argument("--seed", type=int, default=0, help="seed of the prompt order, the sampling and the bootstrap")
    s.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap draws over groups")
    s.add_argument("--max-memory-gb", type=float, default=4.0, help="refuse runs whose gradients need more memory")
    s.add_argument("--out", required=True, help="folder for gradient_diagnostic.json and .md")
    s.set_defaults(fn=cmd_gradient_diagnostic)
