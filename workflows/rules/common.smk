# Config loading and validation, and the path helpers the rules place. What runs for a target (runs, table rows,
# the specs of the tracking and table steps) is planned in pgpo/workflow/plan.py, a tested module of pure functions.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from pgpo.workflow import plan
from pgpo.config.schema import ConfigError
from pgpo.config.yamlconf import load_yaml_text
from pgpo.workflow.config_schema import check_config, config_sources
from pgpo.workflow.launch import job_command
from pgpo.workflow.prepare import plan as prepare_plan

REPO = Path(workflow.basedir)


def _load(config):
    """`extends` resolved, the schema's defaults filled, then every method name and override checked (before any job)."""
    for path in workflow.overwrite_configfiles or []:  # Snakemake's own reader keeps the last of a repeated key
        try:
            load_yaml_text(Path(path).read_text(), str(path))
        except ConfigError as e:
            raise WorkflowError(f"workflow config: {e}") from None
    if "extends" in config and "profile" not in config:
        # its runs would land under the parent's name and root, beside (or over) the parent's own results
        files = ", ".join(str(f) for f in workflow.overwrite_configfiles or []) or "the --config values"
        raise WorkflowError(f"workflow config {files}: it extends {config['extends']} but has no `profile:` name of "
                            "its own; add `profile: <name>` (and a `root:` for its results)")
    resolved = plan.resolve_extends(config, REPO / "workflows/config")
    config.clear()
    config.update(resolved)
    # one line per violation naming the file and key (validate would print the whole schema and config)
    sources = config_sources(workflow.configfiles, workflow.config_settings.config, REPO / "workflows/config",
                             given=workflow.overwrite_configfiles)
    try:
        check_config(config, sources)
    except ConfigError as e:
        raise WorkflowError(str(e)) from None  # each line names its file
    validate(config, "../schemas/config.schema.yaml")  # fills in the schema's defaults
    # The checks read every method and recipe file (no model code: tests/cli/test_light_imports.py). A cluster job
    # re-parses this file twice (its submission and its job step), after the main process has checked the same
    # config: check there only.
    if not workflow.is_main_process:
        return
    try:
        plan.check(config, REPO)
    except ConfigError as e:
        raise WorkflowError(f"workflow config: {e}") from None


_load(config)
ROOT = config["root"]
LAYOUT = plan.layout(config)  # every path under ROOT (pgpo.records.layout); wildcards pass through its methods
PROFILE = config["profile"]
# the pgpo of the interpreter running Snakemake (an unactivated .venv/bin/snakemake works), importing this checkout's
# code (the code that planned the job, not the venv's editable install of another checkout); `launch` too
PGPO = job_command("pgpo", REPO)
VARIANTS = list(plan.ablation_grid(config, REPO))
# the paper profile converts its downloaded training set first (pgpo.workflow.prepare plans the job; None elsewhere)
PREPARE = prepare_plan(config)


def repo_path(p):
    return plan.repo_path(REPO, p)


def sets(overrides, flag="--set"):
    return plan.set_args(overrides, flag)


def start_model(size):
    return plan.start_model(config, size)


def warm_start_marker():
    return plan.checkpoint_marker(config, None, "base")


def prepared_data():
    """Inputs of every training job: the prepared split, where the profile prepares one."""
    return [PREPARE.outputs[0]] if PREPARE else []


def train_data_set():
    """--set overrides naming the training split: the tiny profile's generated one or the prepared one."""
    tiny = {"data.train": f"{LAYOUT.data}/train.jsonl"} if config["build_tiny"] else {}
    return {**tiny, **(PREPARE.train_set if PREPARE else {})}


def resources_of(kind):
    r = config["resources"].get(kind, {})
    return {"gpu": r.get("gpus", 0), "runtime": r.get("runtime_min", 60), "mem_mb": r.get("mem_mb", 4000)}


def ablation_method_sets(wc):
    return sets(plan.ablation_grid(config, REPO)[wc.variant], "--method-set")


def checkpoint_marker(wc):
    return plan.checkpoint_marker(config, wc.size, wc.run)


def checkpoint_dir(wc):
    return plan.checkpoint_dir(config, wc.size, wc.run)


def checkpoint_revision(wc):
    """--revision <commit> for a row whose checkpoint is a pinned hub id (the base row, a released checkpoint)."""
    revision = plan.checkpoint_revision(config, wc.size, wc.run)
    return f"--revision {revision}" if revision else ""


def target_inputs(target):
    return plan.target_inputs(config, target, REPO)


def track_spec(target):
    return plan.track_spec(config, target, REPO).to_json()


def table_spec(target):
    return plan.table_spec(config, target, REPO).to_json()
