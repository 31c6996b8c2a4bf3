"""Generate: lmms-eval samples k responses per question; we write them to fixed paths for `pgpo score`.

<out>/samples/<benchmark>.jsonl   one question a row: doc_id, id, question, answer, choices, responses (k)
<out>/samples/<benchmark>.meta.json   how they were made: checkpoint hash, backend, sampling, prompt, pixel
                                       budget, inputs, lmms-eval's own avg@k (cross-check), versions, wall time
<out>/results.json   lmms-eval's own aggregated results file, every benchmark of <out> (pgpo.evaluation.lmms_results)
The model is built once and reused for every benchmark (one backend for the whole table).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from pgpo.config.schema import deep_merge
from pgpo.data.datasets import sha256_file
from pgpo.evaluation.benchmarks import TASKS_DIR, Benchmark, check_cached, hub_source, task_override, tiny_inputs
from pgpo.evaluation.config import EvalConfig
from pgpo.evaluation.docs import METRIC, PREPARED_SUITE
from pgpo.evaluation.guard import check_cache_writable, check_environment, check_metrics
from pgpo.data.prompts import INSTRUCTION, SYSTEM_PROMPT
from pgpo.records.stages import write_samples_meta
from pgpo.util.atomic import write_atomic
from pgpo.util.jsonfile import read_json


def _saved_pixels(checkpoint: str) -> dict:
    """min/max pixels of a checkpoint's saved image processor (transformers 5 or the older file layout)."""
    root = Path(checkpoint)
    for name, section in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        if (root / name).exists():
            p = read_json(root / name, "the checkpoint's writer (its processor.save_pretrained)", what="processor config")
            p = p.get(section, {}) if section else p
            size = p.get("size") or {}
            found = {"min_pixels": p.get("min_pixels", size.get("shortest_edge")),
                     "max_pixels": p.get("max_pixels", size.get("longest_edge"))}
            if any(found.values()):
                return found
    return {}


def pixel_budget(checkpoint: str, cfg: EvalConfig) -> dict:
    """The image pixel budget in force: the config's, else the checkpoint processor's (= the training budget)."""
    saved = _saved_pixels(checkpoint)
    fallback = "checkpoint processor" if saved else "processor default of the hub model"
    return {"min_pixels": cfg.min_pixels or saved.get("min_pixels"),
            "max_pixels": cfg.max_pixels or saved.get("max_pixels"),
            "source": {"min_pixels": "config" if cfg.min_pixels else fallback,
                       "max_pixels": "config" if cfg.max_pixels else fallback}}


def model_args(checkpoint: str, cfg: EvalConfig, pixels: dict) -> dict:
    b = cfg.backend
    if b.name == "pgpo_vlm":
        return {"pretrained": checkpoint, "device": b.device, "dtype": b.dtype, "batch_size": b.batch_size,
                "attn_implementation": b.attn_implementation, "min_pixels": cfg.min_pixels or None,
                "max_pixels": cfg.max_pixels or None, "seed": cfg.seed, "threads": b.threads}
    args = {"model": checkpoint, "tensor_parallel_size": b.tensor_parallel_size, "dtype": b.dtype,
            "data_parallel_size": b.data_parallel_size, "gpu_memory_utilization": b.gpu_memory_utilization,
            "batch_size": b.batch_size, "max_new_tokens": cfg.sampling.max_new_tokens}
    if pixels["max_pixels"]:
        args["max_pixels"] = int(pixels["max_pixels"])  # lmms-eval's own resize before the processor
    budget = {key: int(pixels[key]) for key in ("min_pixels", "max_pixels") if pixels[key]}
    if budget:
        args["mm_processor_kwargs"] = budget
    if b.max_model_len:
        args["max_model_len"] = b.max_model_len
    if b.enforce_eager:
        args["enforce_eager"] = True
    return args


def build_model(name: str, args: dict):
    """Instantiate the lmms-eval model class once (resolved through lmms-eval's registry + our entry point)."""
    from lmms_eval.models import get_model

    lm = get_model(name)(**args)
    if name == "vllm":
        plain_vllm_progress(lm.client)
    return lm


def plain_vllm_progress(engine) -> bool:
    """Where progress is plain lines (output not a terminal), vLLM's own per-call bar is turned off. lmms-eval calls
    `LLM.chat(...)` with vLLM's default use_tqdm=True; the plain mode's TQDM_DISABLE makes that bar a disabled one
    whose elapsed time is 0, and vLLM divides by it (ZeroDivisionError in every Snakemake job and CI log).
    lmms-eval's own "Model Responding" bar still reports progress. Returns whether the engine was changed."""
    from pgpo.util.progress import plain_wanted

    if not plain_wanted():
        return False
    for name in ("chat", "generate"):
        method = getattr(engine, name)

        @functools.wraps(method)
        def without_bar(*args, _method=method, **kwargs):
            kwargs["use_tqdm"] = False
            return _method(*args, **kwargs)

        setattr(engine, name, without_bar)
    return True


def gen_kwargs(cfg: EvalConfig) -> dict:
    s = cfg.sampling
    return {"until": [], "max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p,
            "do_sample": s.temperature > 0, "top_k": 0,
            "repetition_penalty": 1.0}


def make_task(bench: Benchmark, override: dict, chat: bool):
    """The lmms-eval task object for this run: the YAML (includes and hooks resolved) with the run's overrides.

    Built here rather than from a task dict because lmms-eval 0.7.3 turns dict configs into simple tasks even for
    chat models (vLLM), which then receive the wrong request layout."""
    from lmms_eval.api.task import ConfigurableMessagesTask, ConfigurableTask
    from lmms_eval.utils import load_yaml_config

    config = load_yaml_config(str(bench.yaml_path), mode="full")
    if "data_files" in (override.get("dataset_kwargs") or {}):  # our validated rows replace the YAML's own loader
        config = {**config, **PREPARED_SUITE}
    config = deep_merge(config, override)
    return (ConfigurableMessagesTask if chat else ConfigurableTask)(config=config)


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "lmms_eval", "datasets")}


def _inputs(bench: Benchmark, cfg: EvalConfig, out_dir: Path, commit: str | None) -> tuple[Path | None, dict]:
    if bench.offline:
        path, sha = tiny_inputs(bench, cfg.data, out_dir)
        return path, {"data_dir": str(Path(cfg.data).resolve()), "split_sha256": sha}
    return None, {**hub_source(bench), "commit": commit, "filter": bench.meta.get("filter"),
                  "expected_questions": bench.meta.get("expected_questions")}


def check_unique_ids(bench: Benchmark, task) -> None:
    """Question ids must be unique (scores, failed-item lists and tables are keyed by them)."""
    from pgpo.data.datasets import DataError

    seen: dict[str, int] = {}
    repeats = []
    for i, doc in enumerate(task.eval_docs):
        key = str(doc.get("id", i))
        if key in seen:
            repeats.append(f"{key!r} (documents {seen[key]} and {i})")
        seen.setdefault(key, i)
    if repeats:
        raise DataError(f"{bench.name}: {len(repeats)} repeated question id(s): {', '.join(repeats[:10])}")


def write_samples(bench: Benchmark, logged: list[dict], path: Path) -> int:
    """One row per question with its k responses, in doc order. Returns the number of questions."""
    rows = []
    for s in sorted(logged, key=lambda s: s["doc_id"]):
        doc, responses = s["doc"], s["filtered_resps"][0]
        rows.append({"doc_id": s["doc_id"], "id": str(doc.get("id", s["doc_id"])), "question": doc["question"],
                     "answer": str(doc["answer"]), "choices": list(doc.get("choices") or []),
                     "responses": list(responses), "lmms_eval_score": s.get(METRIC)})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def prepare_tasks(benchmarks: list[Benchmark], cfg: EvalConfig, out_dir: Path, commits: dict, chat: bool,
                  progress=print) -> dict[str, tuple[dict, object]]:
    """benchmark -> (its input record, its lmms-eval task): read, mapped and checked before any model loads."""
    prepared = {}
    for bench in benchmarks:
        data_file, inputs = _inputs(bench, cfg, out_dir, commits.get(bench.name))
        task = make_task(bench, task_override(bench, cfg.sampling.samples, gen_kwargs(cfg), data_file,
                                              commits.get(bench.name)), chat=chat)
        check_unique_ids(bench, task)
        if not bench.offline:  # rows excluded by the benchmark's documented rule (pgpo.evaluation.sources)
            from pgpo.evaluation.sources import EXCLUDED, EXCLUSION_RULES

            inputs["excluded"] = list(EXCLUDED.get(bench.name, []))
            inputs["exclusion_rule"] = EXCLUSION_RULES.get(bench.name)
            if inputs["excluded"]:
                progress(f"{bench.name}: {len(inputs['excluded'])} row(s) excluded by rule: "
                         + ", ".join(f"{e['id']} ({e['rule']})" for e in inputs["excluded"]))
        prepared[bench.name] = (inputs, task)
    return prepared


def check_prompts(checkpoint: str, cfg: EvalConfig, pixels: dict, prepared: dict) -> None:
    """Every question that lmms-eval will generate for fits the model's context (pgpo.evaluation.prompt_budget)."""
    from pgpo.evaluation.prompt_budget import check_prompt_budget, context_length

    context = context_length(checkpoint, cfg.backend.max_model_len)
    if context is None:
        return
    from transformers import AutoTokenizer

    from pgpo.models.families import family_for

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    family = family_for(checkpoint)
    factor = family.resize_factor
    lo, hi = family.default_pixels  # where nothing pins the budget: the family's released processors' own
    pixels = {"min_pixels": pixels.get("min_pixels") or lo, "max_pixels": pixels.get("max_pixels") or hi}
    for name, (_, task) in prepared.items():
        docs = list(task.eval_docs)
        check_prompt_budget(name, docs[:cfg.limit] if cfg.limit else docs, tokenizer, pixels, context,
                            cfg.sampling.max_new_tokens, factor)


def generate(checkpoint: str, benchmarks: list[Benchmark], cfg: EvalConfig, out_dir: str | Path,
             progress=print, requested: list[str] | None = None) -> dict[str, Path] | None:
    """Sample every benchmark; returns {benchmark: samples file} (None on non-zero ranks of a parallel launch).
    `requested`: every benchmark the evaluation asked for (a resumed one generates only some): recorded in each
    meta file, so scoring the run can say which are missing."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import get_datetime_str

    from pgpo.evaluation import lmms_results
    from pgpo.util.provenance import code_version, dir_hash

    check_environment()
    check_cache_writable()
    # before loading a 7B model: every dataset must be cached; the commit found is the one evaluated and recorded
    commits = {b.name: check_cached(b) for b in benchmarks if not b.offline}
    out_dir = Path(out_dir)
    code = code_version()
    pixels = pixel_budget(checkpoint, cfg)
    args = model_args(checkpoint, cfg, pixels)
    ckpt_hash = dir_hash(checkpoint) if Path(checkpoint).is_dir() else f"hub:{checkpoint}"
    # every input is read, mapped and checked before the model loads (minutes for a 7B model)
    from lmms_eval.models import get_model

    if Path(checkpoint).is_dir():  # a cut weight file stopped in safetensors with no path, after minutes of setup
        from pgpo.util.integrity import check_model_dir

        check_model_dir(checkpoint, "restore it (a hub snapshot: download it again; a training's final/: delete "
                                    "final/ and run.json beside it, and the same `pgpo train` writes them again "
                                    "from its last checkpoint)")
    prepared = prepare_tasks(benchmarks, cfg, out_dir, commits, not get_model(cfg.backend.name).is_simple, progress)
    check_prompts(checkpoint, cfg, pixels, prepared)
    lm = build_model(cfg.backend.name, args)
    manager = TaskManager("WARNING", include_path=str(TASKS_DIR), include_defaults=False)
    written = {}
    for n, bench in enumerate(benchmarks, 1):
        inputs, task = prepared[bench.name]
        progress(f"[{n}/{len(benchmarks)}] {bench.name}: {cfg.sampling.samples} samples per question "
                 f"({cfg.backend.name})")
        start = time.time()
        tracker = lmms_results.tracker(cfg.backend.name, args)  # its timer starts here, as the CLI's does
        results = simple_evaluate(
            model=lm, model_args=lmms_results.cli_model_args(args),  # recorded only: the model is built already
            tasks=[task],
            task_manager=manager, limit=cfg.limit or None, log_samples=True, bootstrap_iters=0,
            random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed, process_docs_parallel=1, verbosity="WARNING",
            # simple_evaluate's default date is fixed when lmms-eval is imported: each benchmark records its own
            datetime_str=get_datetime_str())
        wall = time.time() - start
        if results is None or int(os.environ.get("RANK", "0")) != 0:
            continue
        check_metrics(bench.task, results["results"][bench.task])
        path = out_dir / "samples" / f"{bench.name}.jsonl"
        n_questions = write_samples(bench, results["samples"][bench.task], path)
        expected = bench.meta.get("expected_questions")
        if expected and not cfg.limit and n_questions != expected:
            progress(f"warning: {bench.name} has {n_questions} questions after filtering and "
                     f"{len(inputs.get('excluded') or [])} exclusion(s), the paper's set has {expected}: check the "
                     f"dataset revision ({inputs.get('commit')})")
        meta = {
            "benchmark": bench.name, "task": bench.task, "checkpoint": str(checkpoint),
            "checkpoint_hash": ckpt_hash, "backend": {"name": cfg.backend.name, "model_args": args},
            "sampling": asdict(cfg.sampling), "gen_kwargs": gen_kwargs(cfg),
            "prompt": {"system": SYSTEM_PROMPT, "instruction": INSTRUCTION}, "pixel_budget": pixels,
            "inputs": inputs, "limit": cfg.limit, "n_questions": n_questions,
            "expected_questions": None if cfg.limit else expected,
            "grading": dict(bench.meta.get("grading") or {}),  # the benchmark's own rule (task YAML), if any
            # vLLM: lmms-eval fixes LLM(seed=1); pgpo_vlm: seed + rank; samples also depend on the rank count
            "sampling_seed": 1 if cfg.backend.name == "vllm" else cfg.seed, "world_size": lm.world_size,
            "lmms_eval": {"avg_at_k": results["results"][bench.task].get(f"{METRIC},k_samples"),
                          "n_samples": results.get("n-samples", {}).get(bench.task)},
            "samples_sha256": sha256_file(path), "wall_seconds": round(wall, 2), "code_version": code,
            "started_at": int(start * 1000), "finished_at": int((start + wall) * 1000), "user": getpass.getuser(),
            "versions": _versions(), "config": asdict(cfg),
            "requested_benchmarks": list(requested or [b.name for b in benchmarks]),
        }
        write_samples_meta(path, meta)
        # after the samples are finished (a failure here leaves them for --resume): lmms-eval's own results file
        lmms_results.save(tracker, results, out_dir)
        written[bench.name] = path
    return written if int(os.environ.get("RANK", "0")) == 0 else None
