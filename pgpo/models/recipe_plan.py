"""A training recipe on given hardware, planned and printed (`pgpo plan-resources`): the recipe and its accelerate
config read into a pgpo.models.resource_plan.Layout, the model's dimensions from its config.json (a local
checkpoint) or from the known hub models below, and the table a user reads."""

from __future__ import annotations

import json
from pathlib import Path

from pgpo.config.yamlconf import ConfigError as PlanInputError  # a UserError: one line, naming the file
from pgpo.models.memory_estimate import ModelDims, RolloutShape
from pgpo.models.resource_plan import GIB, MARGIN, Hardware, Layout, Plan, plan, suggest

_QWEN25_VISION = {"vision_hidden": 1280, "vision_intermediate": 3420, "vision_depth": 32, "vision_heads": 16}
KNOWN_MODELS = {
    # the hub's config.json of each (tests/models/test_resource_plan.py checks them against the copies in
    # tests/fixtures/qwen): planning needs no download
    "Qwen/Qwen2.5-VL-3B-Instruct": ModelDims(vocab=151936, hidden=2048, intermediate=11008, layers=36, heads=16,
                                             kv_heads=2, tied=True, **_QWEN25_VISION),
    "Qwen/Qwen2.5-VL-7B-Instruct": ModelDims(vocab=152064, hidden=3584, intermediate=18944, layers=28, heads=28,
                                             kv_heads=4, tied=False, **_QWEN25_VISION),
}



def model_dims(path: str, family_name: str = "") -> ModelDims:
    """From <path>/config.json when the path is a local checkpoint, else a known hub id (`family_name`: the
    recipe's model.family, if it names one)."""
    from pgpo.models.families import family_for

    family = family_for(path, family_name)
    if not family.memory_model:
        raise PlanInputError(f"model.path {path!r} is a {family.name} model: the planner's activation counts "
                             "(pgpo/models/memory_estimate.py) model Qwen2.5-VL only so far")
    config = Path(path).expanduser() / "config.json"
    if config.is_file():
        from pgpo.util.jsonfile import read_json

        return ModelDims.from_hf_config(read_json(config, "the checkpoint's config"))
    if path in KNOWN_MODELS:
        return KNOWN_MODELS[path]
    raise PlanInputError(f"model.path {path!r}: no config.json there and not a known hub model "
                         f"({', '.join(KNOWN_MODELS)}); give a local checkpoint")


def deepspeed_of(accelerate_config: str) -> dict:
    """ZeRO stage and offload devices of an accelerate YAML (its deepspeed_config, or the JSON file it names)."""
    if not accelerate_config:
        return {"zero": 0, "offload_optimizer": False, "offload_params": False}
    from pgpo.config.schema import REPO
    from pgpo.config.yamlconf import read_yaml

    path = Path(accelerate_config)
    if not path.is_file() and not path.is_absolute() and (REPO / path).is_file():
        path = REPO / path  # a repository path (the shipped recipes name workflows/config/accelerate/*.yaml)
    if not path.is_file():
        raise PlanInputError(f"accelerate_config {accelerate_config}: no such file")
    ds = (read_yaml(path) or {}).get("deepspeed_config") or {}
    if "deepspeed_config_file" in ds:
        from pgpo.util.jsonfile import read_json

        zero = read_json(Path(ds["deepspeed_config_file"]), "DeepSpeed config").get("zero_optimization", {})
        return {"zero": int(zero.get("stage", 0)),
                "offload_optimizer": (zero.get("offload_optimizer") or {}).get("device", "none") != "none",
                "offload_params": (zero.get("offload_param") or {}).get("device", "none") != "none"}
    return {"zero": int(ds.get("zero_stage", 0)),
            "offload_optimizer": ds.get("offload_optimizer_device", "none") not in ("none", None),
            "offload_params": ds.get("offload_param_device", "none") not in ("none", None)}


def layout_of(cfg, gpus: int, accelerate_config: str | None = None) -> Layout:
    """The Layout of a pgpo.config.schema.TrainConfig run on `gpus` processes (`accelerate_config`: the one the
    launch command names, which decides DeepSpeed; default the recipe's)."""
    from pgpo.config.schema import visual_token_pixels

    m, r = cfg.model, cfg.rollout
    if not m.max_pixels:
        raise PlanInputError("model.max_pixels is 0 (the checkpoint's processor decides): pin it to plan memory")
    shape = RolloutShape(rows=cfg.micro_batch, prompt_text_tokens=r.max_prompt_text_tokens,
                         visual_tokens=m.max_pixels // visual_token_pixels(cfg),
                         completion_tokens=r.max_completion_length, images=r.max_images)
    colocated = r.use_vllm and r.vllm_mode == "colocate"
    accelerate = cfg.accelerate_config if accelerate_config is None else accelerate_config
    return Layout(shape=shape, dtype=m.dtype, **deepspeed_of(accelerate), lora_rank=m.lora.rank,
                  freeze_vision=m.freeze_vision, checkpointing=cfg.gradient_checkpointing,
                  attention=m.attn_implementation, vllm_utilization=r.vllm_gpu_memory_utilization if colocated else 0.0,
                  vllm_tp=r.vllm_tensor_parallel_size, sleep_mode=r.vllm_sleep_mode,
                  generation_rows=r.prompts_per_step * r.num_generations // gpus, model_only=cfg.save_model_only,
                  save_total_limit=cfg.save_total_limit)


def gib(n: int) -> str:
    return f"{n / GIB:7.1f}"


def render(title: str, p: Plan, lay: Layout, hw: Hardware, runs: int = 1) -> str:
    """The table `pgpo plan-resources` prints."""
    s = lay.shape
    lines = [f"{title}: {hw.gpus} x {hw.gpu_memory_gib:g} GiB" + (f", {hw.cpu_memory_gib:g} GiB CPU" if
                                                                    hw.cpu_memory_gib else ""),
             (f"longest micro-batch: {s.rows} rows x {s.seq_len} tokens ({s.images} image(s) x {s.visual_tokens} "
              f"visual + {s.prompt_text_tokens} text + {s.completion_tokens} completion)"),
             f"layout: ZeRO-{lay.zero}" + (" + optimizer offload" if lay.offload_optimizer else "")
             + (" + parameter offload" if lay.offload_params else "")
             + (f", LoRA rank {lay.lora_rank}" if lay.lora_rank else ", full fine-tuning")
             + (", gradient checkpointing" if lay.checkpointing else "")
             + (f", vLLM colocated at {lay.vllm_utilization:g}" + (" with sleep mode" if lay.sleep_mode else "")
                if lay.vllm_utilization else ""),
             "", "per GPU                 GiB"]
    for name, value in p.per_gpu.items():
        lines.append(f"  {name:18s} {gib(value)}")
    for name, value in p.phases.items():
        lines.append(f"  = {name} phase{'':5s}{gib(value)}")
    lines.append(f"  limit ({MARGIN:.0%})        {gib(int(MARGIN * p.budget))}")
    if lay.vllm_utilization:
        lines.append(f"vLLM KV cache: {p.kv_sequences} longest sequences at once "
                     f"(of {lay.generation_rows} generated per GPU per step)")
    if p.cpu:
        lines.append(f"CPU memory (offloaded states, one node): {p.cpu / GIB:.1f} GiB")
    d = p.disk
    lines += ["", "disk                    GiB",
              f"  checkpoint{'':8s}{gib(d['checkpoint'])}" + ("   model only: cannot resume exactly (the optimizer "
                                                             "state restarts)" if lay.model_only else ""),
              f"  final/{'':12s}{gib(d['final'])}",
              f"  one run (peak){'':4s}{gib(d['run'])}   ({lay.save_total_limit} kept + the one being saved + final/)"]
    if runs > 1:
        lines.append(f"  {runs} runs{'':12s}{gib(runs * d['run'])}")
    lines.append("")
    lines.append("fits" if p.fits else "DOES NOT FIT: " + "; ".join(p.problems))
    return "\n".join(lines)


def render_suggestions(steps) -> str:
    if not steps:
        return ""
    out = ["", "to make it fit, in this order (each step keeps the ones before):"]
    for name, cost, after in steps:
        out.append(f"  {name:70s} peak {after.peak / GIB:5.1f} GiB  {'fits' if after.fits else ''}  ({cost})")
    return "\n".join(out)


def plan_recipe(cfg, gpus: int | None = None, gpu_memory_gib: float = 80.0, cpu_memory_gib: float = 0.0,
                accelerate_config: str | None = None):
    """(plan, layout, hardware, suggestions) of a loaded recipe."""
    hw = Hardware(gpus=gpus or cfg.num_processes, gpu_memory_gib=gpu_memory_gib, cpu_memory_gib=cpu_memory_gib)
    dims = model_dims(cfg.model.path, cfg.model.family)
    lay = layout_of(cfg, hw.gpus, accelerate_config)
    return plan(dims, lay, hw), lay, hw, suggest(dims, lay, hw)


def as_json(p: Plan, lay: Layout, hw: Hardware, steps) -> str:
    from dataclasses import asdict

    return json.dumps({"hardware": asdict(hw), "layout": asdict(lay), "per_gpu": p.per_gpu, "phases": p.phases,
                       "peak": p.peak, "budget": p.budget, "fits": p.fits, "problems": p.problems,
                       "kv_sequences": p.kv_sequences, "cpu": p.cpu, "disk": p.disk,
                       "suggestions": [{"knob": k, "cost": c, "peak": a.peak, "fits": a.fits} for k, c, a in steps]},
                      indent=2)


SHIPPED = (("paper_7b.yaml", 8, 80), ("paper_3b.yaml", 8, 80), ("paper_3b_1x80gb_lora.yaml", 1, 80),
           ("paper_3b_8x24gb.yaml", 8, 24), ("paper_3b_8x24gb.yaml", 8, 48))
"""The recipes of workflows/config/train/ and the hardware each is for (the table of docs/paper-scale.md)."""


def shipped_table(train_dir: Path) -> str:
    """docs/paper-scale.md's markdown table of the shipped recipes, planned (GiB per GPU)."""
    from pgpo.config.schema import load_train_config

    def f(x: float, cpu: bool = False) -> str:
        return "0 (CPU)" if cpu and not x else ("0" if not x else f"{x / GIB:.1f}")

    header = ("| recipe | GPUs | weights | ZeRO-3 gather | gradients | optimizer | activations | vLLM | rollout peak | "
              "update peak | limit | longest seqs in KV | checkpoint | run (peak disk) |")
    lines = [header, "|---" * 14 + "|"]
    for recipe, gpus, memory in SHIPPED:
        p, lay, _, _ = plan_recipe(load_train_config(train_dir / recipe), gpus, memory)
        g, off = p.per_gpu, lay.offload_optimizer
        lines.append(f"| {recipe} | {gpus} x {memory} | {f(g['weights'])} | {f(g['zero3_gather'])} | "
                     f"{f(g['gradients'], off)} | {f(g['optimizer'], off)} | {f(g['activations'])} | {f(g['vllm'])} | "
                     f"{f(p.phases['rollout'])} | {f(p.phases['update'])} | {f(MARGIN * p.budget)} | "
                     f"{p.kv_sequences} | {f(p.disk['checkpoint'])} | {f(p.disk['run'])} |")
    return "\n".join(lines)


def launch_accelerate_config(launch: str) -> str | None:
    """The accelerate config a launch command names (`--config_file X` / `--config_file=X`): what decides DeepSpeed
    for the job; "" for a plain `pgpo train` (one process, no DeepSpeed); None when it cannot be told (the
    recipe's accelerate_config is planned)."""
    import re

    found = re.search(r"--config_file[= ](\S+)", launch)
    if found:
        return found.group(1)
    words = launch.split()
    return "" if words and words[0].endswith("pgpo") else None


def check_fits(cfg, train_resources: dict, where: str, launch: str = "", method: str = "") -> None:
    """A recipe on the profile's training GPUs (resources.train: gpus x gpu_memory_gib) with the DeepSpeed config the
    launch command names, planned as `pgpo plan-resources` plans it; refused at the dry run when it does not fit,
    with the knob to turn first. Nothing is checked without gpu_memory_gib (the tiny profiles: CPU) or for a model
    family the planner does not count (pgpo.models.families: memory_model)."""
    from pgpo.models.families import family_for

    counted = family_for(cfg.model.path, cfg.model.family).memory_model
    if not train_resources.get("gpu_memory_gib") or not counted:
        return  # no GPUs given, or a family whose passes the planner does not count yet (said in its profile)
    gpus, memory = train_resources.get("gpus") or cfg.num_processes, train_resources["gpu_memory_gib"]
    accelerate = launch_accelerate_config(launch)
    p, _, _, steps = plan_recipe(cfg, gpus, memory, accelerate_config=accelerate)
    if not p.fits:
        first = f"; first knob: {steps[0][0]}" if steps else ""
        raise PlanInputError(f"{where} does not fit resources.train ({gpus} x {memory:g} GiB): "
                             f"{'; '.join(p.problems)}{first} (details: pgpo plan-resources --config <recipe> "
                             f"{f'--method {method} ' if method else ''}--gpus {gpus} --gpu-memory {memory:g}"
                             f"{f' --set accelerate_config={accelerate}' if accelerate else ''} and the profile's "
                             "train_set as --set)")
