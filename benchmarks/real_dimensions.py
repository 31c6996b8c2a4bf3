"""Peak memory of one rollout micro-batch at the real Qwen2.5-VL dimensions, next to the analytic estimate.

The model is built from the real config (tests/fixtures/qwen/config_3b.json, config.json = 7B) with random
weights in bf16: constructed on the meta device, then materialised (`to_empty` + transformers' own
`init_weights`, which also recomputes the rotary inverse frequencies a meta build leaves empty). The batch is
what a rollout hands the trainer: the real tokenizer, chat template and image processor at the paper's pixel
budget (max_pixels 1,003,520 = 1,280 visual tokens per image), one image per row, rows of different prompt length
(left-padded, TRL's layout), random completions of `--completion` tokens (the last rows shorter, right-padded).

Components, each in a fresh subprocess (peak RSS is the kernel's VmHWM, reset through /proc/self/clear_refs
just before the component, minus the RSS at that moment: the peak ABOVE the weights and inputs):
- weights: RSS of the materialised model (full depth unless --weights-layers says otherwise)
- vision: the vision tower on the micro-batch's pixel values (no grad)
- image_forward: TRL 1.16's GRPOTrainer._get_per_token_logps_and_entropies on the policy with TRL's fused LM head
  (no grad; log-probs + entropy, as the trainer's old-log-prob / S pass); includes the vision tower
- blind: pgpo.training.blind_forward.blind_forward (visual columns dropped, original mRoPE positions; no grad)
- shaping: k3 of the two passes' saved log-probs + the registered pgpo shaper
- loss / loss_gc: the loss forward+backward of TRL's forward with gradient (all weights trainable, as the paper:
  vision tower included), without / with gradient checkpointing
Forward components run at `--layers` text layers and `--vision-depth` vision blocks (real widths, vocabulary,
grids and sequence lengths): without gradient a layer's activations are freed before the next one runs, so the
peak does not depend on depth (seen: the vision tower peaks at 0.583 GiB with 2 and with 8 blocks, the 8 including
a full-attention block, in the 7B and 3B runs); with gradient it grows per
layer, and the full-depth figure is the estimate scaled by the measured/estimated ratio at the truncated depth.

    python benchmarks/real_dimensions.py --config tests/fixtures/qwen/config_3b.json --layers 2 --vision-depth 8 \
        --json benchmarks/results/real_dimensions_3b.json            # ~45 min on 2 shared cores
    python benchmarks/real_dimensions.py --config tests/fixtures/qwen/config.json --layers 1 --vision-depth 2 \
        --weights-layers 4 --components weights,vision,image_forward,blind,shaping,loss_gc
        # 7B where RAM is short: weights measured on 4 layers and extrapolated per layer (exact counts)
    python benchmarks/real_dimensions.py --from-json benchmarks/results/real_dimensions_3b.json   # re-render
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgpo.models.memory_estimate import (  # pure Python: no torch
    ModelDims,
    RolloutShape,
    estimate,
)

GIB = 2**30
PAPER_MAX_PIXELS = 1003520  # workflows/config/train/paper_3b.yaml: 1,280 visual tokens per image
PAPER_MIN_PIXELS = 200704
IMAGE_SIZE = (1120, 896)  # width x height: grid (1, 64, 80) -> 5,120 patches -> 1,280 visual tokens
QUESTION = ("In the figure, triangle ABC is inscribed in the circle with centre O. The chord BD bisects angle ABC "
            "and meets AC at E. Given that AB = 6, BC = 8 and the angle ABC measures 60 degrees, find the length of "
            "BE and the area of the quadrilateral ABCD. Give the exact value and explain every step of the "
            "construction you use, including which triangles are similar and why.")
COMPONENTS = ("weights", "vision", "image_forward", "blind", "shaping", "loss", "loss_gc")


# -- memory ----------------------------------------------------------------------------------------------------
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm() -> int:
    """The kernel's peak RSS of this process (VmHWM) since the last reset, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> int:
    """Free what can be freed, reset VmHWM to the current RSS, return that RSS (the baseline)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
    return rss()


# -- the model and the batch (child side) -----------------------------------------------------------------------
def build_model(config_path: str, layers: int | None, vision_depth: int | None):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig.from_pretrained(config_path)
    if layers:
        cfg.text_config.num_hidden_layers = layers
        cfg.text_config.layer_types = cfg.text_config.layer_types[:layers] if getattr(
            cfg.text_config, "layer_types", None) else None
    if vision_depth:
        cfg.vision_config.depth = vision_depth
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()  # normal(0, 0.02) weights, unit norms, rotary inverse frequencies (fp32) recomputed
    return model.eval()


def build_batch(rows: int, completion: int, seed: int = 0):
    """A rollout micro-batch in TRL's layout, from the real processor at the paper's pixel budget."""
    import numpy as np
    import torch
    from PIL import Image

    from pgpo.models.processor import load_processor
    from pgpo.data.prompts import conversation

    processor = load_processor(ROOT / "tests/fixtures/qwen", min_pixels=PAPER_MIN_PIXELS,
                               max_pixels=PAPER_MAX_PIXELS)
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8))
    texts = []
    for i in range(rows):  # shorter questions further down: left padding as in TRL's prompt batch
        words = QUESTION.split()
        question = " ".join(words[:len(words) - 12 * i])
        messages = conversation(question)
        messages[1]["content"] = [{"type": "image"}, {"type": "text", "text": messages[1]["content"]}]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    processor.tokenizer.padding_side = "left"
    enc = processor(text=texts, images=[image] * rows, return_tensors="pt", padding=True)
    tok = processor.tokenizer
    g = torch.Generator().manual_seed(seed)
    lengths = [completion - (completion // 5) * min(i, 1) for i in range(rows)]  # row 0 full, others 0.8 T
    completion_ids = torch.full((rows, completion), tok.pad_token_id)
    completion_mask = torch.zeros(rows, completion, dtype=torch.long)
    for i, n in enumerate(lengths):
        completion_ids[i, :n] = torch.randint(0, 151000, (n,), generator=g)  # ordinary tokens, no specials
        completion_mask[i, :n] = 1
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]
    ids = torch.cat([prompt_ids, completion_ids], 1)
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "pixel_values": enc["pixel_values"],  # fp32, as TRL passes them
            "image_grid_thw": enc["image_grid_thw"], "mm_token_type_ids": (ids == image_id).long(),
            "num_images": [1] * rows,
            # text of the longest prompt: the image's pads and its 2 vision markers excluded
            "prompt_text_tokens": prompt_ids.size(1) - int((prompt_ids[0] == image_id).sum()) - 2}


def trl_logprobs(model, b, micro: int):
    """TRL's own log-prob pass (the trainer's forward), called unbound with a stand-in `self`."""
    import types

    import torch
    from accelerate import Accelerator
    from trl import GRPOTrainer

    stand_in = types.SimpleNamespace(accelerator=Accelerator(cpu=True))
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    attention = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    return GRPOTrainer._get_per_token_logps_and_entropies(
        stand_in, model, ids, attention, b["completion_ids"].size(1), batch_size=micro, compute_entropy=True,
        pixel_values=b["pixel_values"], image_grid_thw=b["image_grid_thw"], num_images=b["num_images"],
        mm_token_type_ids=b["mm_token_type_ids"])


def child(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from trl.trainer.utils import add_fused_lm_head

    out: dict = {"component": a.child}
    b = build_batch(a.rows, a.completion)
    out["shape"] = {"seq_len": b["prompt_ids"].size(1) + a.completion, "prompt_len": b["prompt_ids"].size(1),
                    "prompt_text_tokens": b["prompt_text_tokens"], "grid": b["image_grid_thw"][0].tolist(),
                    "pixel_rows": b["pixel_values"].size(0)}
    if a.child == "shaping":
        from pgpo.methods.dependency import k3
        from pgpo.methods.shaping import SHAPERS, ShapingBatch

        image = torch.load(Path(a.io) / "image_forward.pt")
        blind = torch.load(Path(a.io) / "blind.pt")
        mask = b["completion_mask"]
        advantages = torch.linspace(-1.0, 1.0, a.rows)
        base = reset_peak()
        start = time.perf_counter()
        dependency = k3(image, blind, mask)
        entry = SHAPERS.get("pgpo")
        result = entry.fn(ShapingBatch(advantages, mask, dependency), entry.make_params({}))
        out.update(seconds=time.perf_counter() - start, peak=hwm() - base,
                   stats={"dependency_mean": dependency[mask.bool()].mean().item(), **result.stats})
        return out
    before = rss()
    start = time.perf_counter()
    layers = a.weights_layers if a.child == "weights" else a.layers
    model = build_model(a.config, layers, a.vision_depth if a.child != "weights" else None)
    out["build_seconds"] = time.perf_counter() - start
    if a.child == "weights":
        out.update(peak=rss() - before, seconds=out["build_seconds"], params=sum(p.numel() for p in model.parameters()),
                   layers=model.config.text_config.num_hidden_layers)
        return out
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))  # what GRPOTrainer installs
    t = a.completion
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    attention = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    grad = a.child in ("loss", "loss_gc")
    if grad:
        model.train()
        if a.child == "loss_gc":  # what TrainingArguments(gradient_checkpointing=True) does
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
    base = reset_peak()
    start = time.perf_counter()
    with torch.set_grad_enabled(grad):
        if a.child == "vision":
            features = model.model.get_image_features(b["pixel_values"], b["image_grid_thw"])
            pooled = getattr(features, "pooler_output", features)
            result = torch.cat(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled
            out["output_shape"] = list(result.shape)
        elif a.child == "image_forward":
            logps, _, _ = trl_logprobs(model, b, a.rows)
            result = logps
            torch.save(logps.float(), Path(a.io) / "image_forward.pt")
        elif a.child == "blind":
            from pgpo.training.blind_forward import blind_forward

            result = blind_forward(model, ids, attention, b["mm_token_type_ids"], b["image_grid_thw"], t)
            out["blind_len"] = ids.size(1) - int((b["mm_token_type_ids"][0] != 0).sum()) - 2
            torch.save(result.float(), Path(a.io) / "blind.pt")
        else:
            logps, _, _ = trl_logprobs(model, b, a.rows)
            mask = b["completion_mask"]
            loss = -(logps * mask).sum() / mask.sum()
            loss.backward()
            result = logps.detach()
            out["grad_params"] = sum(p.grad is not None for p in model.parameters())
    out.update(seconds=time.perf_counter() - start, peak=hwm() - base)
    valid = b["completion_mask"].bool()
    if a.child in ("image_forward", "blind", "loss", "loss_gc"):
        out["finite"] = bool(torch.isfinite(result[valid]).all())
        out["logp_mean"] = result[valid].float().mean().item()
    return out


# -- the parent: one subprocess per component, then the table ------------------------------------------------------
def run_child(a, component: str, io: str) -> dict:
    cmd = [sys.executable, __file__, "--child", component, "--io", io] + [
        f"--{k.replace('_', '-')}={v}" for k, v in (
            ("config", a.config), ("layers", a.layers), ("vision_depth", a.vision_depth),
            ("weights_layers", a.weights_layers), ("rows", a.rows), ("completion", a.completion),
            ("threads", a.threads)) if v is not None]
    start = time.perf_counter()
    proc = subprocess.run(["timeout", str(a.timeout), *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"component": component, "error": f"exit {proc.returncode}: {' | '.join(tail)}", "wall": wall}
    return {**json.loads(lines[-1][7:]), "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "tests/fixtures/qwen/config_3b.json"))
    p.add_argument("--layers", type=int, default=2, help="text layers of the forward components (0 = all)")
    p.add_argument("--vision-depth", type=int, default=8, help="vision blocks of the forward components (0 = all)")
    p.add_argument("--weights-layers", type=int, default=0, help="text layers of the weights component (0 = all)")
    p.add_argument("--rows", type=int, default=2, help="micro-batch (rows of one forward)")
    p.add_argument("--completion", type=int, default=2048, help="completion tokens T (padded length)")
    p.add_argument("--components", default=",".join(COMPONENTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per component")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--from-json", help="re-render the table of a run's raw results.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--io", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.layers, a.vision_depth, a.weights_layers = a.layers or None, a.vision_depth or None, a.weights_layers or None
    if a.from_json:  # re-render a finished run's table (e.g. after changing the estimate)
        with open(a.from_json) as f:
            raw = json.load(f)
        for k, v in raw["args"].items():
            if k not in ("json", "from_json"):
                setattr(a, k, v)
        with open(a.config) as f:
            render(a, ModelDims.from_hf_config(json.load(f)), raw["results"])
        return
    if a.child:
        print("RESULT " + json.dumps(child(a)), flush=True)
        return

    import tempfile

    with open(a.config) as f:
        full = ModelDims.from_hf_config(json.load(f))
    io = tempfile.mkdtemp(prefix="realdim-")
    results = {}
    for component in a.components.split(","):
        results[component] = r = run_child(a, component, io)
        print(f"  {component}: " + (r.get("error") or f"peak {r['peak'] / GIB:.3f} GiB in {r['seconds']:.1f} s "
                                     f"(wall {r['wall']:.0f} s)"), flush=True)
    with open(Path(io) / "results.json", "w") as f:  # raw, before the report (re-render with --from-json)
        json.dump({"args": vars(a), "results": results}, f)
    print(f"raw results: {io}/results.json")
    render(a, full, results)


def render(a, full: ModelDims, results: dict) -> None:
    shape_info = next((r["shape"] for r in results.values() if "shape" in r), None)
    report(a, full, results, shape_info)


def report(a, full: ModelDims, results: dict, shape_info: dict | None) -> None:
    shape = RolloutShape(rows=a.rows, prompt_text_tokens=shape_info["prompt_text_tokens"] if shape_info else 200,
                         visual_tokens=PAPER_MAX_PIXELS // (28 * 28), completion_tokens=a.completion,
                         images=1)
    run = full.truncated(layers=a.layers or full.layers, vision_depth=a.vision_depth or full.vision_depth)
    est_run = estimate(run, shape, attention="sdpa", lm_head_kernel="torch")
    weights_dims = full.truncated(layers=a.weights_layers or full.layers, vision_depth=full.vision_depth)
    est_weights = estimate(weights_dims, shape)
    print(f"\nmodel {a.config}: {full.layers} text layers x hidden {full.hidden}, vocab {full.vocab}, vision "
          f"{full.vision_depth} x {full.vision_hidden}; forward components at {run.layers} text layers, "
          f"{run.vision_depth} vision blocks; weights at {weights_dims.layers} text layers")
    if shape_info:
        print(f"batch: {a.rows} rows, L = {shape_info['seq_len']} (prompt {shape_info['prompt_len']}: "
              f"{shape_info['prompt_text_tokens']} text tokens + image grid {shape_info['grid']} = "
              f"{shape.visual_tokens} visual tokens), completion T = {a.completion}; bf16, CPU, {a.threads} threads")
    print("peak = VmHWM above the RSS just before the component (fresh subprocess each); full depth: the same\n"
          "for the no-gradient passes (their peak does not grow with depth), the full-depth estimate x the measured\n"
          "ratio for weights and the gradient passes\n")
    est_full = estimate(full, shape, attention="sdpa", lm_head_kernel="torch")
    print(f"{'component':<15}{'measured GiB':>13}{'estimate GiB':>13}{'ratio':>7}{'full depth GiB':>15}"
          f"{'seconds':>9}   note")
    rows = {}
    for name, r in results.items():
        est = (est_weights if name == "weights" else est_run).get(name)
        if "error" in r:
            print(f"{name:<15}{'FAILED':>13}   {r['error']}")
            continue
        # below 16 MiB the peak is allocator and page granularity, not the tensors: no ratio
        ratio = r["peak"] / est if est and r["peak"] >= 16 * 2**20 else float("nan")
        depth_grows = name in ("weights", "loss", "loss_gc")
        at_full = est_full[name] * ratio if depth_grows else r["peak"]
        at_full = r["peak"] if math.isnan(at_full) else at_full  # no ratio
        note = ""
        if name == "weights":
            note = f"{r['params']:,} params"
        elif "finite" in r:
            note = f"finite={r['finite']} mean logp {r['logp_mean']:.2f}"
        elif "stats" in r:
            note = ", ".join(f"{k} {v:.3g}" for k, v in r["stats"].items())
        print(f"{name:<15}{r['peak'] / GIB:>13.3f}{(est or 0) / GIB:>13.3f}{ratio:>7.2f}{at_full / GIB:>15.2f}"
              f"{r['seconds']:>9.1f}   {note}")
        rows[name] = {"measured": r["peak"], "estimate": est, "ratio": ratio, "full_depth": at_full, **r}
    paper = estimate(full, RolloutShape(rows=8, prompt_text_tokens=shape.prompt_text_tokens,
                                        visual_tokens=shape.visual_tokens, completion_tokens=a.completion),
                     attention="flash_attention_2", lm_head_kernel="triton")
    print("\nestimate at full depth, paper micro-batch 8, flash attention + Triton LM head (GPU), GiB:")
    print("  " + ", ".join(f"{k} {v / GIB:.2f}" for k, v in paper.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "results": results, "rows": rows, "paper_estimate": paper}, f, indent=2)


if __name__ == "__main__":
    main()
