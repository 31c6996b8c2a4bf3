"""`pgpo` command line: one subcommand per stage (build-tiny, make-data, prepare, warm-start, train, probe, evaluate,
score, ...)."""

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


def cmd_prepare(a):
    from pgpo.virl39k import prepare_virl39k

    # a.dataset has one choice today (argparse checks it); another converter gets its own branch here
    prepare_virl39k(a.src, a.out, table=a.table, images_root=a.images_root, revision=a.revision,
                    max_rejected_fraction=a.max_rejected_fraction)


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
    method = load_method(a.method, _overrides(a.method_set))
    cfg = load_train_config(a.config, overrides, method)  # with the method's overrides for the recipe's profile
    run = train(cfg, method, a.out, fresh=a.fresh)
    if "wall_seconds" in run:  # rank 0 (the other ranks of a multi-process launch write nothing)
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


def _run_name(checkpoint: str) -> str:
    """runs/grpo-s0/final -> grpo-s0; runs/grpo-s0/checkpoint-60 -> grpo-s0-checkpoint-60; model/warmstart ->
    warmstart; a hub id Qwen/Qwen2.5-VL-3B-Instruct -> Qwen2.5-VL-3B-Instruct."""
    path = Path(checkpoint.rstrip("/"))
    if path.name == "final":
        return path.parent.name
    return f"{path.parent.name}-{path.name}" if path.name.startswith("checkpoint-") else path.name


def cmd_evaluate(a):
    import os

    # evaluation never touches the network: datasets come from the local cache (`pgpo fetch` fills it)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from pgpo.evaluation import benchmarks as bm
    from pgpo.evaluation.config import load_eval_config
    from pgpo.evaluation.generate import generate
    from pgpo.evaluation.score import score_run

    overrides = _overrides(a.set)
    if a.samples is not None:
        overrides.setdefault("sampling", {})["samples"] = a.samples
    if a.data:
        overrides["data"] = a.data
    cfg = load_eval_config(a.config, overrides)
    benches = bm.resolve(a.benchmarks.split(",") if a.benchmarks else cfg.benchmarks)
    if not Path(a.checkpoint).is_dir() and Path(a.checkpoint).exists():
        raise FileNotFoundError(f"{a.checkpoint}: not a checkpoint directory")
    out = Path(a.out or Path("results") / Path(a.config).stem / "eval" / _run_name(a.checkpoint))
    if a.revision:  # a hub model at a pinned commit: evaluate its cached snapshot (what training started from)
        from pgpo.config import COMMIT, is_hub_id
        from pgpo.processor import pinned_snapshot

        if not (is_hub_id(a.checkpoint) and COMMIT.fullmatch(a.revision)):
            raise ValueError(f"--revision {a.revision!r}: needs a hub id checkpoint (org/name) and a 40-hex commit")
        a.checkpoint = pinned_snapshot(a.checkpoint, a.revision)
    existing = [b.name for b in benches if (out / "samples" / f"{b.name}.jsonl").exists()]
    if existing and not a.overwrite:
        raise FileExistsError(f"{out}/samples already holds {existing}; pass --overwrite to regenerate them, "
                              f"--out for another run directory, or `pgpo score --run {out}` to re-score")
    written = generate(a.checkpoint, benches, cfg, out)
    if written is None or a.no_score:
        return
    table = score_run(out, list(written), cfg.bootstrap_samples, cfg.seed, a.summary)
    for name, r in table["benchmarks"].items():
        lo, hi = r["ci95_bootstrap"]
        print(f"{name:14s} avg@{r['k']} {r['avg_at_k']:.3f}  95% CI [{lo:.3f}, {hi:.3f}]  n={r['n_questions']}"
              f"  failed={r['n_failed']} timeouts={r['n_timeout']}")
    print(f"{'mean':14s} {table['mean_avg_at_k']:.3f}   -> {out}")


def cmd_score(a):
    from pgpo.evaluation.score import score_run

    table = score_run(a.run, a.benchmarks.split(",") if a.benchmarks else None, a.bootstrap_samples, a.seed,
                      grader=a.grader)
    print(json.dumps(table, indent=2))


def cmd_fetch(a):
    from pgpo.evaluation import benchmarks as bm

    for bench in bm.resolve(a.benchmarks.split(",")):
        if bench.offline:
            print(f"{bench.name}: local synthetic suite (pgpo make-data), nothing to fetch")
            continue
        print(f"{bench.name}: cached at commit {bm.fetch(bench, pin=a.pin)}" + (" (pinned)" if a.pin else ""))


def cmd_benchmarks(a):
    from pgpo.evaluation import benchmarks as bm

    for name, bench in bm.all_benchmarks().items():
        src = "local data" if bench.offline else " ".join(
            f"{k}={v}" for k, v in bm.hub_source(bench).items() if v)
        print(f"{name:13s} {bench.task:18s} {src}")
    print("groups: " + "; ".join(f"{g} = {','.join(v)}" for g, v in bm.groups().items()))


def cmd_track(a):
    from pgpo.tracking import ingest

    spec = json.loads(a.spec)
    result = ingest(spec["root"], spec["target"], {k: Path(v) for k, v in spec["trainings"].items()},
                    {k: Path(v) for k, v in spec["evaluations"].items()}, spec["benchmarks"], spec.get("labels"))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"{spec['target']}: {len(result['runs'])} runs under parent {result['parent_run_id']}")


def cmd_table(a):
    from pgpo.figures import write_figures
    from pgpo.tables import build_table, table_records, write_table, write_table_html
    from pgpo.tracking import log_table

    spec = json.loads(a.spec)
    tracking = json.loads(Path(spec["tracking"]).read_text()) if spec.get("tracking") else {}
    table = build_table({k: [Path(d) for d in v] for k, v in spec["rows"].items()}, spec["benchmarks"],
                        spec["average_over"], tracking.get("runs"))
    from pgpo.evaluation.benchmarks import all_benchmarks

    meta = all_benchmarks()
    names = {b: meta[b].meta.get("paper_column", b.removeprefix("tiny_")) if b in meta else b for b in spec["benchmarks"]}
    # the figures the rule declares (kind -> file); without a 'figures' field only the per-benchmark bars
    figures = dict(spec.get("figures", {"bars": f"{spec['out']}.png"}))
    files = write_table(table, spec["out"], spec["title"], names, bars=figures.pop("bars", None) is not None)
    files.append(write_table_html(table, f"{spec['out']}.html", spec["title"], names))
    files += write_figures(spec, table, figures)
    if tracking:
        log_table(spec["root"], tracking["parent_run_id"], files, table_records(table))
    for p in table["provenance"]:
        if p["n_failed"]:
            print(f"pgpo table: warning: {p['n_failed']} failed or ungradable item(s) in {p['result']}",
                  file=sys.stderr)
    print(Path(spec["out"]).with_suffix(".md").read_text())


def cmd_dependency_report(a):
    from pgpo.dependency_report import dependency_report

    stats = dependency_report(a.checkpoint, a.data, a.out, a.items_per_task, a.k, seed=a.seed)
    print(json.dumps(stats["all"], indent=2))


def cmd_methods(a):
    from pgpo.config import available_methods, load_method

    for name in available_methods():
        m = load_method(name)
        blind = m.blind_view.name if m.needs_blind_view() else "-"
        terms = ",".join(m.loss_terms) or "-"
        print(f"{name:10s} {m.description}\n{'':10s} shaper={m.shaper.name} blind_view={blind} loss={m.loss.type} "
              f"dynamic_sampling={m.dynamic_sampling.enabled} loss_terms={terms}")


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

    s = sub.add_parser("prepare", help="convert a published training set into a split (paper profile: ViRL39K)")
    s.add_argument("dataset", choices=["virl39k"])
    s.add_argument("--src", required=True, help="the downloaded release: a folder (table + unzipped images) or "
                   "the table file")
    s.add_argument("--out", required=True, help="output folder: train.jsonl, images/, MANIFEST.json, "
                   "prepare_report.json")
    s.add_argument("--table", help="the table file, if --src holds several")
    s.add_argument("--images-root", help="folder the table's image paths are relative to (default: --src)")
    s.add_argument("--revision", help="the dataset commit the data must be (checked against download metadata; "
                   "recorded in MANIFEST.json)")
    s.add_argument("--max-rejected-fraction", type=float, default=0.05,
                   help="fail (after writing the report) if more than this share of rows cannot be converted")
    s.set_defaults(fn=cmd_prepare)

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
    s.add_argument("--fresh", action="store_true",
                   help="delete a different run found in --out and start this one (default: refuse)")
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

    s = sub.add_parser("evaluate", help="sample k answers per question through lmms-eval, then score them")
    s.add_argument("--checkpoint", required=True, help="checkpoint directory (or a hub id on the paper profile)")
    s.add_argument("--revision", default="", help="hub commit (40 hex) of a hub-id --checkpoint (the base rows)")
    s.add_argument("--benchmarks", help="comma-separated names or groups (paper, tiny); default: the config's")
    s.add_argument("--samples", type=int, help="k of avg@k (default: the config's, 8)")
    s.add_argument("--config", default="workflows/config/eval/tiny.yaml", help="evaluation profile YAML")
    s.add_argument("--data", help="data directory of the tiny suites (default: the config's)")
    s.add_argument("--out", help="run directory (default: results/<profile>/eval/<run name of the checkpoint>)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. backend.batch_size=8")
    s.add_argument("--no-score", action="store_true", help="only generate (score later with `pgpo score`)")
    s.add_argument("--overwrite", action="store_true", help="regenerate samples that already exist in --out")
    s.add_argument("--summary", help="write the summary here instead of <out>/summary.json")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("score", help="(re)score the samples of an evaluation run, on CPU, without the model")
    s.add_argument("--run", required=True, help="run directory written by `pgpo evaluate`")
    s.add_argument("--benchmarks", help="comma-separated (default: every samples file of the run)")
    s.add_argument("--bootstrap-samples", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--grader", default="pgpo", choices=["pgpo", "mathruler"],
                   help="pgpo (default) or mathruler (EasyR1's / PAPO's); another grader also writes "
                        "<run>/agreement/<benchmark>.<grader>.json")
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("fetch", help="download paper benchmarks into the HF cache (network); --pin their commit")
    s.add_argument("--benchmarks", default="paper")
    s.add_argument("--pin", action="store_true", help="write the downloaded commit into the task YAML")
    s.set_defaults(fn=cmd_fetch)

    s = sub.add_parser("benchmarks", help="list the benchmarks (lmms-eval tasks) and their sources")
    s.set_defaults(fn=cmd_benchmarks)

    s = sub.add_parser("track", help="mirror training runs and evaluations into MLflow (workflow step)")
    s.add_argument("--spec", required=True, help="JSON: root, target, benchmarks, trainings, evaluations, labels")
    s.add_argument("--out", required=True, help="JSON file mapping result directories to MLflow run ids")
    s.set_defaults(fn=cmd_track)

    s = sub.add_parser("table", help="write a results table (.md/.csv/.html) and its figures (workflow step)")
    s.add_argument("--spec", required=True, help="JSON: rows, benchmarks, average_over, tracking, out, title, "
                   "trainings, labels, warmstart, figures (kind -> file: bars, curves, heatmap, warmstart)")
    s.set_defaults(fn=cmd_table)

    s = sub.add_parser("dependency-report", help="token visual dependency heatmap (HTML/PNG) and sparsity stats")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="output prefix (.html, .png, .json)")
    s.add_argument("--items-per-task", type=int, default=8)
    s.add_argument("--k", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_dependency_report)

    s = sub.add_parser("methods", help="list the methods in baselines/")
    s.set_defaults(fn=cmd_methods)

    a = p.parse_args(argv)
    from pgpo.config import ConfigError
    from pgpo.data import DataError, DiskFull
    from pgpo.evaluation.guard import JudgeConfigured

    try:
        a.fn(a)
    except (ConfigError, DataError, DiskFull, FileNotFoundError, FileExistsError, JudgeConfigured) as e:
        print(f"pgpo {a.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
