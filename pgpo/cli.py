"""`pgpo` command line: one subcommand per stage (build-tiny, make-data, prepare, warm-start, train, probe, evaluate,
score, ...)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pgpo.config.overrides import _overrides, check_checkpoint
from pgpo.util.atomic import write_atomic


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one: no "(default: None)" under optional flags (0 is a default)."""

    def _get_help_string(self, action):
        d = action.default
        if d is None or d is False or d == "" or d == argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Version(argparse.Action):
    """--version, computed only when asked (it runs git)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_string())
        parser.exit()


def version_string() -> str:
    """pgpo's package version and the git commit of the checkout (when it is one)."""
    from importlib.metadata import PackageNotFoundError, version

    from pgpo.util.provenance import code_version

    try:
        package = version("pgpo")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        package = "unknown"
    return f"pgpo {package} (commit {code_version()})"


def cmd_status(a):
    from pgpo.results.status import format_status, status

    print(format_status(status(a.root, stale_after=a.stale_after)))


def cmd_build_tiny(a):
    from pgpo.tiny.model import TinyModelConfig, build_tiny

    from pgpo.models.families import family_named

    out = build_tiny(a.out, TinyModelConfig(seed=a.seed, family=family_named(a.family).name))
    print(f"tiny {a.family} written to {out}")


def cmd_make_data(a):
    from pgpo.tiny.make_data import make_data

    out = make_data(a.out, seed=a.seed, train_per_task=a.train_per_task, warmstart_per_task=a.warmstart_per_task,
                    eval_per_task=a.eval_per_task)
    print(f"synthetic data written to {out} (checksums in {out / 'MANIFEST.json'})")


def cmd_prepare(a):
    from pgpo.data.virl39k import prepare_virl39k

    # a.dataset has one choice today (argparse checks it); another converter gets its own branch here
    prepare_virl39k(a.src, a.out, table=a.table, images_root=a.images_root, revision=a.revision,
                    max_rejected_fraction=a.max_rejected_fraction)


def cmd_warm_start(a):
    from pgpo.tiny.warmstart import WarmStartConfig, warm_start
    from pgpo.config.yamlconf import build_dataclass, read_yaml

    raw = read_yaml(Path(a.config)) if a.config else {}
    cfg = build_dataclass(WarmStartConfig, {**(raw or {}), **_overrides(a.set)}, a.config or "--set")
    check_checkpoint(a.model, "--model")
    report = warm_start(a.model, a.data, a.out, cfg)
    print(json.dumps(report["curve"][-1], indent=2))


def cmd_train(a):
    from pgpo.config.schema import load_method, load_train_config
    from pgpo.training.run import train

    overrides = _overrides(a.set)
    if a.seed is not None:
        overrides["seed"] = a.seed
    method = load_method(a.method, _overrides(a.method_set))
    cfg = load_train_config(a.config, overrides, method)  # with the method's overrides for the recipe's profile
    run = train(cfg, method, a.out, fresh=a.fresh)
    if run is not None:  # rank 0 (the other ranks of a multi-process launch write nothing)
        print(f"{method.name}: {run.global_steps} steps in {run.wall_seconds} s -> {Path(a.out) / 'final'}")


def cmd_plan_resources(a):
    from pgpo.config.schema import load_method, load_train_config
    from pgpo.models.recipe_plan import as_json, plan_recipe, render, render_suggestions

    method = load_method(a.method) if a.method else None
    cfg = load_train_config(a.config, _overrides(a.set), method)
    p, lay, hw, steps = plan_recipe(cfg, a.gpus, a.gpu_memory, a.cpu_memory)
    if a.json:
        print(as_json(p, lay, hw, steps))
    else:
        print(render(a.config, p, lay, hw, a.runs) + render_suggestions(steps))
    return 0 if p.fits else 3


def cmd_probe(a):
    from pgpo.evaluation.probe import probe, write_probe
    from pgpo.tiny.synthetic import TASKS

    check_checkpoint(a.checkpoint, "--checkpoint")
    tasks = a.tasks.split(",") if a.tasks else list(TASKS)
    result = probe(a.checkpoint, a.data, tasks, a.items_per_task, a.k, seed=a.seed)
    write_probe(result, a.out)
    for task, v in result["suites"].items():
        print(f"{task:9s} avg@{a.k} {v['avg_at_k']:.3f}  S(answer) {v['s_answer_mean']:.3f}  "
              f"S(other) {v['s_other_mean']:.3f}  above gate {v['share_above_gate']:.2f}")


def cmd_evaluate(a):
    from pgpo.evaluation.run import evaluate_checkpoint

    overrides = _overrides(a.set)
    if a.samples is not None:
        overrides.setdefault("sampling", {})["samples"] = a.samples
    if a.data:
        overrides["data"] = a.data
    result = evaluate_checkpoint(a.checkpoint, a.config, overrides, a.out,
                                 a.benchmarks.split(",") if a.benchmarks else None, a.revision, a.overwrite,
                                 not a.no_score, a.summary, a.resume)
    if result["table"] is None:
        return
    for name, r in result["table"]["benchmarks"].items():
        lo, hi = r["ci95_bootstrap"]
        print(f"{name:14s} avg@{r['k']} {r['avg_at_k']:.3f}  95% CI [{lo:.3f}, {hi:.3f}]  n={r['n_questions']}"
              f"  failed={r['n_failed']} timeouts={r['n_timeout']}")
    table = result["table"]
    if table["mean_avg_at_k"] is not None:  # the headline mean: controls left out (pgpo.evaluation.benchmarks.headline)
        print(f"{'mean':14s} {table['mean_avg_at_k']:.3f} over {len(table['mean_over'])} of {len(table['benchmarks'])} "
              f"benchmarks (controls left out)")
    print(f"results -> {result['out']}")
    if result["card"]:
        print(f"model card updated: {result['card']}")


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
    from pgpo.workflow.plan import TrackSpec
    from pgpo.tracking.ingest import ingest

    spec = TrackSpec.from_json(a.spec)
    result = ingest(spec.root, spec.target, {k: Path(v) for k, v in spec.trainings.items()},
                    {k: Path(v) for k, v in spec.evaluations.items()}, spec.benchmarks, spec.labels)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(a.out), json.dumps(result, indent=2))
    print(f"{spec.target}: {len(result['runs'])} runs under parent {result['parent_run_id']}")


def cmd_table(a):
    from pgpo.results.target import write_target
    from pgpo.workflow.plan import TableSpec

    table, diff = write_target(TableSpec.from_json(a.spec))
    print(table.read_text())
    print(diff.read_text())


def cmd_dependency_report(a):
    from pgpo.evaluation.dependency_report import dependency_report

    check_checkpoint(a.checkpoint, "--checkpoint")
    stats = dependency_report(a.checkpoint, a.data, a.out, a.items_per_task, a.k, seed=a.seed)
    print(json.dumps(stats["all"], indent=2))


def cmd_methods(a):
    from pgpo.config.schema import available_methods, load_method

    if a.fields or a.write:
        from pgpo.config.field_reference import README, fields_table, readme_with_table

        if a.write:
            README.write_text(readme_with_table(README.read_text()))
            print(f"wrote the field table of {README}")
        else:
            print(fields_table(), end="")
        return
    for name in available_methods():
        m = load_method(name)
        blind = m.blind_view.name if m.needs_blind_view() else "-"
        terms = ",".join(m.loss_terms) or "-"
        print(f"{name:10s} {m.description}\n{'':10s} shaper={m.shaper.name} blind_view={blind} loss={m.loss.type} "
              f"dynamic_sampling={m.dynamic_sampling.enabled} loss_terms={terms}")


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand; each flag has a help line and --help shows its default (tests/cli/test_cli.py checks)."""
    p = argparse.ArgumentParser(prog="pgpo", formatter_class=_Formatter, description="PGPO reproduction harness: "
                                "tiny Qwen2.5-VL on CPU, Qwen2.5-VL-3B/7B on GPUs, same code.")
    p.add_argument("--version", action=_Version, help="print the package version and git commit, then exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)

    _add_data_commands(add)
    _add_training_commands(add)
    _add_evaluation_commands(add)
    _add_results_commands(add)
    from pgpo.diagnostics.cli import add_analysis_commands  # statistics over finished runs: power, gradients

    add_analysis_commands(add)
    from pgpo.testbed.cli import add_testbed_commands  # issue 21's credit-assignment testbed: its own module

    add_testbed_commands(add("testbed", "the credit-assignment testbed: data, warm-start, gates, record, table"),
                         _Formatter)
    return p


def _add_data_commands(add) -> None:
    """The model and data stages: build-tiny, make-data, prepare, warm-start."""
    seed_help = "random seed"
    s = add("build-tiny", "build a tiny vision-language model offline (tokenizer, processor, model)")
    s.add_argument("--out", required=True, help="directory to write the model folder to")
    s.add_argument("--family", default="qwen2_5_vl", help="model family (pgpo/models/families): qwen2_5_vl, qwen3_vl")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    s.set_defaults(fn=cmd_build_tiny)

    s = add("make-data", "generate synthetic training data and evaluation suites")
    s.add_argument("--out", required=True, help="directory to write train/warmstart/suite_*.jsonl and images to")
    s.add_argument("--seed", type=int, default=0, help=seed_help)
    s.add_argument("--train-per-task", type=int, default=500, help="RL training problems per task")
    s.add_argument("--warmstart-per-task", type=int, default=1500, help="supervised warm-start problems per task")
    s.add_argument("--eval-per-task", type=int, default=50, help="questions per evaluation suite")
    s.set_defaults(fn=cmd_make_data)

    s = add("prepare", "convert a published training set into a split (paper profile: ViRL39K)")
    s.add_argument("dataset", choices=["virl39k"], help="which published set")
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

    s = add("warm-start", "supervised warm start of the tiny model")
    s.add_argument("--model", required=True, help="checkpoint directory to start from")
    s.add_argument("--data", required=True, help="data directory made by make-data")
    s.add_argument("--out", required=True, help="directory to write the warm-started model to")
    s.add_argument("--config", help="YAML with WarmStartConfig fields")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a WarmStartConfig field")
    s.set_defaults(fn=cmd_warm_start)


def _add_training_commands(add) -> None:
    """RL training of one method."""
    s = add("train", "RL training of one method (resumes from the last checkpoint in --out)")
    s.add_argument("--method", required=True, help="a name in baselines/ or a method YAML path")
    s.add_argument("--config", default="workflows/config/train/tiny.yaml", help="training recipe YAML")
    s.add_argument("--out", required=True, help="run directory: checkpoint-N/, final/, metrics.jsonl, run.json")
    s.add_argument("--seed", type=int, help="override the recipe's seed")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field, e.g. max_steps=5")
    s.add_argument("--method-set", action="append", metavar="KEY=VALUE",
                   help="override a method field, e.g. shaper.params.tau=0.2")
    s.add_argument("--fresh", action="store_true",
                   help="delete a different run found in --out and start this one (default: refuse)")
    s.set_defaults(fn=cmd_train)
    s = add("plan-resources", "GPU memory per component and disk of a recipe on given GPUs; exit 3 if it does not "
                              "fit, with the knobs to turn")
    s.add_argument("--config", required=True, help="training recipe YAML")
    s.add_argument("--method", help="a method whose recipe overrides apply (e.g. vppo's 8 rollouts)")
    s.add_argument("--gpus", type=int, help="GPUs (default: the recipe's num_processes)")
    s.add_argument("--gpu-memory", type=float, default=80.0, help="GiB of one GPU")
    s.add_argument("--cpu-memory", type=float, default=0.0, help="GiB of CPU memory per node (0: not checked)")
    s.add_argument("--runs", type=int, default=1, help="trainings sharing the disk (methods x seeds x sizes)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field, e.g. micro_batch=4")
    s.add_argument("--json", action="store_true", help="print the plan as JSON")
    s.set_defaults(fn=cmd_plan_resources)


def _add_evaluation_commands(add) -> None:
    """Held-out measurement: probe, evaluate, score, fetch, benchmarks, dependency-report."""
    s = add("probe", "held-out avg@k and token visual dependency (answer vs other tokens)")
    s.add_argument("--checkpoint", required=True, help="checkpoint directory (or a hub id)")
    s.add_argument("--data", required=True, help="data directory made by make-data")
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--k", type=int, default=8, help="samples per question (avg@k)")
    s.add_argument("--items-per-task", type=int, default=50, help="questions per suite")
    s.add_argument("--tasks", help="comma-separated suites (default: all)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed")
    s.set_defaults(fn=cmd_probe)

    s = add("evaluate", "sample k answers per question through lmms-eval, then score them")
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
    s.add_argument("--resume", action="store_true",
                   help="keep the samples of benchmarks this same evaluation (checkpoint, config, code) finished in "
                        "--out before it was stopped; generate (or regenerate) the others")
    s.add_argument("--summary", help="write the summary here instead of <out>/summary.json")
    s.set_defaults(fn=cmd_evaluate)

    s = add("score", "(re)score the samples of an evaluation run, on CPU, without the model")
    s.add_argument("--run", required=True, help="run directory written by `pgpo evaluate`")
    s.add_argument("--benchmarks", help="comma-separated (default: every samples file of the run)")
    s.add_argument("--bootstrap-samples", type=int, default=10000, help="resamples of the 95%% bootstrap interval")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    s.add_argument("--grader", default="pgpo", choices=["pgpo", "mathruler"],
                   help="pgpo or mathruler (EasyR1's / PAPO's); another grader than pgpo also writes "
                        "<run>/agreement/<benchmark>.<grader>.json")
    s.set_defaults(fn=cmd_score)

    s = add("fetch", "download paper benchmarks into the HF cache (network); --pin their commit")
    s.add_argument("--benchmarks", default="paper", help="comma-separated names or groups")
    s.add_argument("--pin", action="store_true", help="write the downloaded commit into the task YAML")
    s.set_defaults(fn=cmd_fetch)

    s = add("benchmarks", "list the benchmarks (lmms-eval tasks) and their sources")
    s.set_defaults(fn=cmd_benchmarks)


def _add_results_commands(add) -> None:
    """Workflow steps over finished runs: status, track, table, methods."""
    s = add("status", "progress of a workflow's trainings and evaluations, read from the files under ROOT")
    s.add_argument("root", help="the workflow's results root, e.g. results/tiny")
    s.add_argument("--stale-after", type=float, default=1800.0,
                   help="seconds without a file update after which an unfinished run counts as stale")
    s.set_defaults(fn=cmd_status)

    s = add("track", "mirror training runs and evaluations into MLflow (workflow step)")
    s.add_argument("--spec", required=True, help="JSON: root, target, benchmarks, trainings, evaluations, labels")
    s.add_argument("--out", required=True, help="JSON file mapping result directories to MLflow run ids")
    s.set_defaults(fn=cmd_track)

    s = add("table", "write a results table (.md/.csv/.html) and its figures (workflow step)")
    s.add_argument("--spec", required=True, help="JSON of pgpo.workflow.plan.TableSpec: rows, benchmarks, average_over, "
                   "tracking, out, title, trainings, labels, warmstart, figures (kind -> file)")
    s.set_defaults(fn=cmd_table)

    s = add("dependency-report", "token visual dependency heatmap (HTML/PNG) and sparsity stats")
    s.add_argument("--checkpoint", required=True, help="checkpoint directory (or a hub id)")
    s.add_argument("--data", required=True, help="data directory made by make-data")
    s.add_argument("--out", required=True, help="output prefix (.html, .png, .json)")
    s.add_argument("--items-per-task", type=int, default=8, help="questions per suite")
    s.add_argument("--k", type=int, default=4, help="samples per question")
    s.add_argument("--seed", type=int, default=0, help="sampling seed")
    s.set_defaults(fn=cmd_dependency_report)

    s = add("methods", "list the methods in baselines/ (with --fields: every method field and component parameter, "
            "with its documentation)")
    s.add_argument("--fields", action="store_true", help="print the field reference (markdown) generated from the "
                   "attribute docstrings of MethodConfig and of every registered component's parameters")
    s.add_argument("--write", action="store_true", help="regenerate the field table of baselines/README.md")
    s.set_defaults(fn=cmd_methods)


def main(argv: list[str] | None = None) -> int:
    from pgpo.util.progress import quiet_environment

    quiet_environment()  # plain progress lines, not tqdm bars, when the output is a log file
    from pgpo.util.checkout import check_checkout

    p = build_parser()
    a = p.parse_args(argv)
    try:
        check_checkout()  # a workflow job runs the code of the checkout that planned it, or nothing
        code = a.fn(a)
    except Exception as e:
        message = error_message(a.command, e, getattr(a, "out", None))
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0  # a command's own exit status (plan-resources: 3 = does not fit)


def error_message(command: str, e: BaseException, out: str | None = None) -> str | None:
    """What the CLI prints for a user's error (pgpo.util.errors): one line, `pgpo <command>: error: ...`; None for
    a bug, which keeps its traceback. `out`: the command's output path, where a full disk without a file name in
    the error is looked for."""
    import errno

    from pgpo.util.errors import UserError, os_error_line

    if isinstance(e, OSError) and e.errno == errno.ENOSPC and not isinstance(e, UserError):
        from pgpo.data.datasets import disk_full_error

        e = disk_full_error(e.filename or out or ".", e, then="rerun the same command")
    if isinstance(e, (UserError, FileNotFoundError, FileExistsError)):
        return f"pgpo {command}: error: {e}"
    line = os_error_line(e) if isinstance(e, OSError) else None
    return None if line is None else f"pgpo {command}: error: {line}"


if __name__ == "__main__":
    sys.exit(main())
