"""Run one RL training: a recipe (TrainConfig) x a method (MethodConfig) -> checkpoints + metrics.jsonl + run.json."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from pgpo.config.schema import ConfigError, MethodConfig, RunConflict, TrainConfig
from pgpo.records.stages import (METRICS_FILE, RUN_CONFIG_FILE, RUN_FILE, RunRecord, append_metrics, find_run,
                                 read_run, truncate_metrics, write_run)
from pgpo.training import preemption
from pgpo.training.grpo_args import to_grpo_config  # the recipe -> GRPOConfig translation
from pgpo.util.provenance import code_version, config_hash, dir_hash


def metrics_callback(path: Path):
    """A TrainerCallback appending every log dict (one per optimizer step) to `path` (JSON lines)."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero and "loss" in logs:
                # the step's wall time, for MLflow's metric timestamps ('time' in the name: run comparisons
                # that drop wall-clock statistics drop it too)
                append_metrics(path, {"step": state.global_step, "timestamp_ms": int(time.time() * 1000), **logs})

    return MetricsFile()


def build_trainer(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path, records=None):
    """The PGPOTrainer of a recipe x method, with the model, processor and dataset loaded (`records`: the
    already validated training split, else it is read here)."""
    from pgpo.data.datasets import load_split, to_trl_dataset
    from pgpo.models.loading import load_model
    from pgpo.models.processor import load_processor, pinned_snapshot
    from pgpo.rewards.registry import resolve, trl_reward
    from pgpo.tracking.live import live_callbacks
    from pgpo.training.lora import peft_config
    from pgpo.training.trainer import PGPOTrainer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    path = pinned_snapshot(cfg.model.path, cfg.model.revision)  # a hub id at its pinned commit (paper recipes)
    processor = load_processor(path, **pixel_budget(cfg))
    processor.tokenizer.padding_side = "left"
    # shared prefill: one prefill per distinct prompt in generate, bitwise the same rollouts
    model = load_model(path, cfg.model.dtype, cfg.model.attn_implementation, fast_attention=True, shared_prefill=True)
    if cfg.model.freeze_vision:
        model.model.visual.requires_grad_(False)
    if cfg.model.lora.rank and Path(path).is_dir():  # the adapter names its base: absolute, loadable from anywhere
        model.config._name_or_path = model.name_or_path = str(Path(path).resolve())
    records = records if records is not None else load_split(cfg.data.train)
    if cfg.data.max_samples:
        records = records[:cfg.data.max_samples]
    from pgpo.models.vision_tokens import vision_tokens

    args = to_grpo_config(cfg, method, out, vision_tokens=vision_tokens(processor))
    reward_errors: dict[str, int] = {}  # completions each reward broke on since the last logged step
    rewards = [trl_reward(spec, reward_errors) for spec in resolve(cfg.rewards, "recipe")]
    trainer = PGPOTrainer(model=model, processing_class=processor, reward_funcs=rewards, args=args,
                          train_dataset=to_trl_dataset(records), method=method, samples=cfg.samples,
                          vllm_engine=vllm_engine_kwargs(cfg), peft_config=peft_config(cfg.model.lora),
                          callbacks=[metrics_callback(out / "metrics.jsonl"), *live_callbacks(out, cfg, method),
                                     preemption.preemption_callback()])
    trainer.reward_errors = reward_errors  # logged and cleared at each step (PGPOTrainer.check_rewards)
    return trainer


def pixel_budget(cfg: TrainConfig) -> dict:
    """The recipe's image pixel budget as processor kwargs ({} = the checkpoint processor's own)."""
    return {k: v for k, v in (("min_pixels", cfg.model.min_pixels), ("max_pixels", cfg.model.max_pixels)) if v}


def vllm_engine_kwargs(cfg: TrainConfig) -> dict:
    """Extra arguments of the colocated rollout engine: vLLM re-processes the raw images with the checkpoint's
    own processor unless told the budget, and its visual-token count must match the trainer's prompt ids."""
    if not cfg.rollout.use_vllm:
        return {}
    out = {"limit_mm_per_prompt": {"image": cfg.rollout.max_images}}
    if cfg.rollout.vllm_enforce_eager:
        out["enforce_eager"] = True
    if pixel_budget(cfg):
        out["mm_processor_kwargs"] = pixel_budget(cfg)
    return out


# fields that do not change what is trained (the workflow sets threads per job; what is logged where); excluded
# when comparing runs: a run resumed with TensorBoard added, or samples logged more often, is the same run
_NOT_THE_RECIPE = ("threads", "samples", "report_to")


def check_model_path(path: str) -> None:
    """A local model directory must exist and hold config.json; 'org/name' may be a hub id (loaded from the
    cache or the hub). Without this, a typo surfaces as transformers' 'Repo id must be in the form ...'."""
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ConfigError(f"model.path: {p} has no config.json (not a Hugging Face model directory)")
        from pgpo.util.integrity import check_model_dir

        check_model_dir(p, "restore or copy the model again (a warm start: delete it and rerun the workflow's "
                           "warm_start rule)")
        return
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ConfigError(f"model.path: {path}: no such directory (and not a hub id of the form org/name)")


def preflight(cfg: TrainConfig) -> list:
    """Every input check that does not need the model, run before it loads (a 7B load takes minutes).
    Returns the validated training split."""
    from pgpo.data.datasets import load_split, verify_split

    check_model_path(cfg.model.path)
    check_world_size(cfg)
    records = load_split(cfg.data.train)  # DataError naming file, row and field
    verify_split(cfg.data.train)  # a split cut at a line boundary is valid JSONL with fewer rows: the hash tells
    check_prompt_budget(cfg, records)
    return records


def check_world_size(cfg: TrainConfig) -> None:
    """The recipe's batch arithmetic assumes num_processes processes; a launch with another count would train on
    another batch size without a word (e.g. `accelerate launch --cpu --num_processes 2` starts ONE process
    unless MPI is set up: use --multi_gpu, which is torchrun, with the Trainer on CPU/gloo)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != cfg.num_processes:
        raise ConfigError(f"launched on {world} process(es) but the recipe says num_processes={cfg.num_processes}: "
                          f"pass --set num_processes={world}, or launch {cfg.num_processes} processes (accelerate "
                          "launch --num_processes N; on CPU add --multi_gpu, since --cpu alone starts one process)")


def is_main_process() -> bool:
    """Rank 0 of the launch (before the Trainer exists): the one process that writes the run's files."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def check_prompt_budget(cfg: TrainConfig, records: list) -> None:
    """Every training row within the recipe's prompt bounds (rollout.max_images, max_prompt_text_tokens), which
    the config check holds against max_model_len. Text tokens are counted with the checkpoint's tokenizer and
    chat template when it is a local directory (a hub id is checked at its first rollout instead)."""
    from pgpo.data.datasets import DataError
    from pgpo.util.errors import listed

    r = cfg.rollout
    problems = [f"{rec.id}: {len(rec.images)} images > rollout.max_images ({r.max_images})" for rec in records
                if len(rec.images) > r.max_images]
    if Path(cfg.model.path, "config.json").exists():
        from transformers import AutoTokenizer

        from pgpo.data.prompts import conversation

        tok = AutoTokenizer.from_pretrained(cfg.model.path)
        if tok.chat_template:  # batched: the paper split has 39k rows
            ids = tok.apply_chat_template([conversation(rec.question, rec.choices) for rec in records],
                                          add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            problems += [f"{rec.id}: {len(row)} text tokens > rollout.max_prompt_text_tokens "
                         f"({r.max_prompt_text_tokens})" for rec, row in zip(records, ids)
                         if len(row) > r.max_prompt_text_tokens]
    if problems:
        raise DataError(listed(f"{cfg.data.train}: {len(problems)} row(s) exceed the recipe's prompt budget; shorten "
                               "or remove them, or raise the budget in the recipe:", problems))


def _recipe(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _NOT_THE_RECIPE}


def run_identity(cfg: TrainConfig, method: MethodConfig) -> dict:
    config = _recipe(asdict(cfg))
    return {"method": asdict(method), "config": config, "hash": config_hash({"m": asdict(method), "c": config})}


def _with_defaults(cls, recorded: dict) -> dict:
    """A recorded recipe or method with the fields added since it was written at their defaults: a field a newer
    version adds (at its default) does not make the same run another one. Recorded as is when it no longer builds
    (a removed field: then it differs, and the comparison says how)."""
    from pgpo.config.yamlconf import build_dataclass

    try:
        return asdict(build_dataclass(cls, recorded, "recorded run"))
    except (ConfigError, TypeError, ValueError):
        return recorded


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_output_dir(out: Path, identity: dict, fresh: bool = False) -> str:
    """'new', 'resume' or 'finished' for this run in `out`; a different run there refuses (RunConflict) unless
    `fresh`, which deletes the old run's checkpoints, metrics, final/ and run.json first."""
    import shutil

    saved = find_run(out)
    if saved is None:
        return "resume" if any(out.glob("checkpoint-*")) else "new"
    name = RUN_FILE if saved.finished else RUN_CONFIG_FILE
    recorded = {"method": _with_defaults(MethodConfig, saved.method),
                "config": _recipe(_with_defaults(TrainConfig, saved.config))}
    changes = _differences(recorded, {"method": identity["method"], "config": identity["config"]})
    if changes and not fresh:
        from pgpo.util.errors import listed

        raise RunConflict(listed(f"{out / name}: {out} holds a run of another recipe/method; use another --out, or "
                                 "--fresh to delete that run and start this one (in the workflow: delete that "
                                 f"directory); {len(changes)} field(s) differ (recorded -> this command):", changes))
    if changes or fresh:
        for path in [*out.glob("checkpoint-*"), out / "final"]:
            shutil.rmtree(path, ignore_errors=True)
        for name_ in (RUN_FILE, RUN_CONFIG_FILE, METRICS_FILE):
            (out / name_).unlink(missing_ok=True)
        return "new"
    return "finished" if saved.finished else "resume"


def train(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path, fresh: bool = False) -> RunRecord | None:
    """`_train` holding the run directory (pgpo.util.run_lock) on rank 0: a second process on it refuses."""
    if not is_main_process():  # the other ranks of this launch write through rank 0
        return _train(cfg, method, output_dir, fresh)
    from pgpo.util.run_lock import lock_run_dir, release_run_dir

    lock_run_dir(output_dir, f"pgpo train --method {method.name}")
    try:
        return _train(cfg, method, output_dir, fresh)
    finally:
        release_run_dir(output_dir)


def _train(cfg: TrainConfig, method: MethodConfig, output_dir: str | Path, fresh: bool = False) -> RunRecord | None:
    """Train (resuming from the last checkpoint in output_dir if any) and write final/ and run.json.

    Returns the run's record (None on the ranks other than 0 of a multi-process launch). Re-running a finished run
    is a no-op (its run.json is returned); a different recipe or method on an existing
    output directory refuses (RunConflict) unless `fresh`."""
    import warnings

    from pgpo.data.datasets import disk_full_error
    from pgpo.training.checkpoints import holds_optimizer_state
    from pgpo.training.lora import save_final

    out = Path(output_dir)
    identity = run_identity(cfg, method)
    out.mkdir(parents=True, exist_ok=True)
    if check_output_dir(out, identity, fresh) == "finished":
        run = read_run(out)
        print(f"{out}: already finished ({run.global_steps} steps, same recipe and method): nothing to do")
        return run
    records = preflight(cfg)  # every input check that needs no model, before it loads
    main = is_main_process()
    if main:
        write_run(out, RunRecord(method=identity["method"], config=asdict(cfg), config_hash=identity["hash"],
                                 finished=False))
    version = code_version()  # at start: a commit made while training must not relabel this run
    trainer = build_trainer(cfg, method, out, records)
    from pgpo.util.progress import use_plain_progress

    use_plain_progress(trainer)  # plain `step N/M ...` lines instead of tqdm bars when the log is a file
    processor = trainer.processing_class
    last = last_complete_checkpoint(out, delete_incomplete=main)
    if main and last is None:
        (out / METRICS_FILE).unlink(missing_ok=True)  # a fresh start: drop metrics of a checkpoint-less attempt
    elif main and last is not None:
        truncate_metrics(out, _step_of(last))
    if main:
        from pgpo.records.stages import truncate_samples

        truncate_samples(out, None if last is None else _step_of(last))
    start, started_at = time.perf_counter(), int(time.time() * 1000)
    inexact = False
    try:
        if last is not None and cfg.max_steps > 0 and _step_of(last) >= cfg.max_steps:
            # killed after the last checkpoint, before run.json: the weights are final, train no further step
            trainer._load_from_checkpoint(last)
            global_steps = _step_of(last)
        else:
            inexact = last is not None and not holds_optimizer_state(last)
            if inexact and trainer.is_deepspeed_enabled:  # transformers' DeepSpeed resume needs global_step*/
                raise RunConflict(f"{last} holds the weights only (save_model_only) and DeepSpeed cannot resume from "
                                  f"it; continue with --set model.path={last} in another --out (a new run from those "
                                  "weights), or train with save_model_only off")
            if inexact and main:
                warnings.warn(f"{last} holds the weights only (save_model_only): this resume restarts AdamW's "
                              "moments, the learning-rate schedule and the RNG, so the run will not equal an "
                              "uninterrupted one (run.json records resumed_inexactly)", stacklevel=2)
            global_steps = trainer.train(resume_from_checkpoint=last).global_step
            if preemption.requested():  # SIGTERM: checkpoint-<step> is saved; final/ and run.json are not written
                print(f"{out}: stopped by SIGTERM after step {global_steps}; checkpoint-{global_steps} saved, the "
                      "same command resumes from it", flush=True)
                raise SystemExit(preemption.PREEMPTED_EXIT)
        wall = time.perf_counter() - start
        save_final(trainer, out / "final", main)  # LoRA: the merged model, and final/adapter/
        if main:
            processor.save_pretrained(out / "final")
    except Exception as e:
        full = disk_full_error(out, e)
        if full is not None:
            raise full from e
        raise
    if not main:  # rank 0 writes run.json (after final/ is complete on its side)
        return None
    run = finished_record(cfg, method, identity["hash"], out, processor, version=version, resumed_from=last,
                          wall=wall, started_at=started_at, global_steps=global_steps)
    run.resumed_inexactly = inexact
    write_run(out, run)
    from pgpo.results.model_card import write_run_cards

    write_run_cards(out)  # <run>/README.md and final/README.md: base, method, hashes, steps
    return run


def finished_record(cfg: TrainConfig, method: MethodConfig, config_hash: str, out: Path, processor, *, version: str,
                    resumed_from: str | None, wall: float, started_at: int, global_steps: int) -> RunRecord:
    """run.json of a run that just wrote final/: what was trained, from which inputs, by which code, for how long."""
    from pgpo.data.datasets import sha256_file

    size = processor.image_processor.size
    return RunRecord(
        method=asdict(method), uses_blind_view=method.needs_blind_view(), config=asdict(cfg),
        config_hash=config_hash,
        code_version=version, resumed_from=resumed_from, wall_seconds=round(wall, 1),
        started_at=started_at, finished_at=int(time.time() * 1000), user=__import__("getpass").getuser(),
        global_steps=global_steps, inputs={"train_split_sha256": sha256_file(cfg.data.train),
                                           "model_hash": dir_hash(cfg.model.path)},
        final_checkpoint_hash=dir_hash(out / "final"),
        pixel_budget={"min_pixels": getattr(size, "shortest_edge", None),
                      "max_pixels": getattr(size, "longest_edge", None),
                      "source": "recipe" if pixel_budget(cfg) else "checkpoint processor"},
        versions={"torch": torch.__version__, "trl": __import__("trl").__version__,
                  "transformers": __import__("transformers").__version__},
    )


def last_complete_checkpoint(out: Path, delete_incomplete: bool = True) -> str | None:
    """The newest checkpoint-N whose every file is whole (pgpo.training.checkpoints: trainer_state.json, written
    last by the Trainer, and each weight, optimizer and RNG file by its format's framing).

    A checkpoint cut short (kill -9 while saving, a full disk) or damaged later (a truncated model.safetensors) is
    deleted with a warning naming the file, so neither this resume nor the Trainer's own checkpoint rotation ever
    picks it, and the previous complete one is used."""
    import shutil
    import warnings

    from pgpo.training.checkpoints import checkpoint_problem

    for ckpt in sorted(out.glob("checkpoint-*"), key=lambda p: _step_of(p) if p.name[11:].isdigit() else -1,
                       reverse=True):
        if not ckpt.name[11:].isdigit():
            continue
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return str(ckpt)
        if not delete_incomplete:  # another rank of this launch deletes it
            continue
        warnings.warn(f"{ckpt} is incomplete ({problem}); deleting it and resuming from the previous checkpoint",
                      stacklevel=2)
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def _step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


