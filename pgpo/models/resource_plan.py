"""GPU memory and disk of a training recipe on given hardware: what `pgpo plan-resources` prints (issue 24).

Pure Python: the passes' activation peaks come from pgpo.models.memory_estimate (each checked against the peak
RSS of the real pass at Qwen2.5-VL's real widths on CPU: benchmarks/real_dimensions.py, ratios 0.99-1.16); the
states that sharding decides are counted here. Per GPU, in bytes:

- weights: every parameter in the model dtype; ZeRO-3 shards them over the GPUs and gathers two units at a time
  (the running layer and the prefetched one: `zero3_gather`); `offload_param` moves the shards to CPU memory.
- gradients: per trainable parameter, fp32 under DeepSpeed (its partitions accumulate in fp32), else the
  parameter's dtype; ZeRO-2/3 shard them, ZeRO-Offload keeps them beside the optimizer in CPU memory; plain data
  parallelism on several GPUs holds a second copy in DDP's reduction buckets.
- optimizer: AdamW. DeepSpeed: fp32 master + 2 fp32 moments (12 bytes per trainable parameter), sharded from
  ZeRO-1 on; plain data parallelism: 2 moments in the parameter's dtype. `offload_optimizer` moves it to CPU.
- LoRA: the trainable parameters are the adapters (rank x (in + out) per adapted linear, kept in fp32 by PEFT);
  the base weights stay frozen in the model dtype. freeze_vision: the vision tower is not trainable.
- activations: the largest pass of one micro-batch (the longest the recipe admits: max_images x max_pixels,
  max_prompt_text_tokens, max_completion_length, micro_batch rows): the image-conditioned and blind log-prob
  passes (no gradient) and the loss forward + backward (with or without gradient checkpointing).
- vllm: a colocated engine takes gpu_memory_utilization x the GPU: its own weight copy (merged, for LoRA), an
  overhead (CUDA graphs, sampler: ENGINE_OVERHEAD, not measurable without a GPU) and the KV cache. It must hold
  one longest sequence to start; how many it decodes at once is reported. Sleep mode (TRL: level 2) frees the
  weights and the KV cache after each generation: only its overhead stays through the update phase.

The GPU peak is the larger of two phases: rollout (states + engine) and update (states + activations, + the
engine's overhead if it sleeps, the whole engine if not). A plan fits when the peak stays under MARGIN of the GPU
(CUDA context, allocator fragmentation and NCCL buffers take the rest). When it does not, `suggest` applies, one
after another, the knobs that help, in the order that changes the objective least, until the recipe fits.

Disk: a checkpoint holds the weights (16-bit, or the adapter) + the optimizer state (DeepSpeed: 12 bytes per
trainable parameter; plain: 2 moments) + RNG/scheduler/trainer state (~10 MB); a model-only checkpoint the
weights alone (it cannot resume exactly: the optimizer restarts). The Trainer saves the new checkpoint before it
deletes the oldest, so a run peaks at (save_total_limit + 1) checkpoints + final/.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pgpo.models.memory_estimate import DTYPE_BYTES, FP32, ModelDims, RolloutShape, estimate

GIB = 2**30
MARGIN = 0.9
"""Share of a GPU a plan may fill."""
ENGINE_OVERHEAD = GIB
"""vLLM's memory besides weights and KV cache (CUDA graphs, sampler, profiling activations): an assumption."""
CHECKPOINT_EXTRA = 10 * 2**20
"""RNG, scheduler and trainer state and the processor's files in a checkpoint (Qwen's tokenizer: ~7 MB)."""


@dataclass(frozen=True)
class Hardware:
    """What the run gets."""

    gpus: int
    """GPUs of the run (one data-parallel process each)."""
    gpu_memory_gib: float
    """Memory of one GPU in GiB (an "80 GB" A100/H100 has 79.1 GiB usable: give what nvidia-smi shows)."""
    cpu_memory_gib: float = 0.0
    """CPU memory of the node in GiB (0: not checked); offloaded states live there."""


@dataclass(frozen=True)
class Layout:
    """What a recipe and its accelerate config decide about memory (`layout_of` reads them)."""

    shape: RolloutShape
    """The longest micro-batch the recipe admits."""
    dtype: str = "bfloat16"
    zero: int = 0
    """DeepSpeed ZeRO stage (0: no DeepSpeed)."""
    offload_optimizer: bool = False
    offload_params: bool = False
    lora_rank: int = 0
    freeze_vision: bool = False
    checkpointing: bool = True
    attention: str = "flash_attention_2"
    vllm_utilization: float = 0.0
    """0: no colocated engine (HF generation, or a vLLM server on other GPUs)."""
    vllm_tp: int = 1
    sleep_mode: bool = False
    generation_rows: int = 1
    """Sequences one process generates per step (prompts_per_step x num_generations / processes)."""
    model_only: bool = False
    """Checkpoints without optimizer state."""
    save_total_limit: int = 2


@dataclass
class Plan:
    """Per-GPU components and phases, the verdict, CPU memory and disk, all in bytes."""

    per_gpu: dict[str, int]
    phases: dict[str, int]
    cpu: int
    budget: int
    fits: bool
    problems: list[str]
    kv_sequences: int
    """Longest sequences the engine's KV cache holds at once (0 without a colocated engine)."""
    disk: dict[str, int]
    engine_shortfall: int = 0
    """Bytes the engine lacks to hold its weights, overhead and one longest sequence (0: it starts)."""

    @property
    def peak(self) -> int:
        return max(self.phases.values())


def lora_params(m: ModelDims, rank: int) -> int:
    """Adapter parameters on every attention and MLP projection of the language model: rank x (in + out) each
    (the default target_modules of pgpo.config.schema.LoraConfig)."""
    h, kv, i = m.hidden, m.kv_dim, m.intermediate
    return m.layers * rank * (2 * (h + h) + 2 * (h + kv) + 3 * (h + i))  # q, o; k, v; gate, up, down


def trainable_params(m: ModelDims, lay: Layout) -> int:
    if lay.lora_rank:
        return lora_params(m, lay.lora_rank)
    return m.text_params() if lay.freeze_vision else m.params()


def kv_bytes_per_token(m: ModelDims, dtype_bytes: int) -> int:
    """Keys and values of every layer for one token position."""
    return 2 * m.layers * m.kv_dim * dtype_bytes


def _largest_unit(m: ModelDims) -> int:
    """Parameters ZeRO-3 gathers at once at most: a decoder layer, a vision block or the embedding / LM head."""
    return max(m.text_layer_params(), m.vision_block_params(), m.vocab * m.hidden)


def plan(m: ModelDims, lay: Layout, hw: Hardware) -> Plan:
    """The per-GPU memory of one training process, its CPU memory and disk (see the module docstring)."""
    b, n = DTYPE_BYTES[lay.dtype], hw.gpus
    params, trainable = m.params(), trainable_params(m, lay)
    deepspeed = lay.zero >= 1
    t = FP32 if lay.lora_rank else b  # bytes of a trainable parameter (PEFT keeps adapters in fp32)
    base = params * b + (trainable * t if lay.lora_rank else 0)
    grad_bytes = trainable * (FP32 if deepspeed else t)
    optim_bytes = trainable * (3 * FP32 if deepspeed else 2 * t)
    weights = 0 if lay.offload_params else base // (n if lay.zero >= 3 else 1)
    per_gpu = {
        "weights": weights,
        "zero3_gather": 2 * _largest_unit(m) * b if lay.zero >= 3 else 0,
        "gradients": (0 if lay.offload_optimizer else grad_bytes // (n if lay.zero >= 2 else 1))
        + (grad_bytes if n > 1 and not deepspeed else 0),  # DDP's reduction buckets: a second copy of every gradient
        "optimizer": 0 if lay.offload_optimizer else optim_bytes // (n if deepspeed else 1),
    }
    passes = estimate(m, lay.shape, attention=lay.attention, dtype_bytes=b)
    from pgpo.models.memory_estimate import Options, loss_peak  # the loss pass without parameter gradients

    o = Options(dtype_bytes=b, attention=lay.attention)
    per_gpu["activations"] = max(passes["image_forward"], passes["blind"],
                                 loss_peak(m, lay.shape, o, lay.checkpointing, with_grads=False))
    budget = int(hw.gpu_memory_gib * GIB)
    engine = int(lay.vllm_utilization * budget)
    per_gpu["vllm"] = engine
    states = per_gpu["weights"] + per_gpu["zero3_gather"] + per_gpu["gradients"] + per_gpu["optimizer"]
    asleep = min(engine, ENGINE_OVERHEAD)  # level-2 sleep frees weights and KV cache, not CUDA graphs or the sampler
    phases = {"rollout": states + engine,
              "update": states + per_gpu["activations"] + (asleep if lay.sleep_mode else engine)}
    problems = []
    kv_sequences = shortfall = 0
    if engine:
        kv = engine - params * b // lay.vllm_tp - ENGINE_OVERHEAD
        per_sequence = kv_bytes_per_token(m, b) * lay.shape.seq_len // lay.vllm_tp
        kv_sequences = max(kv, 0) // per_sequence
        shortfall = max(per_sequence - kv, 0)
        if kv_sequences < 1:
            problems.append(f"the vLLM engine ({_gib(engine)} = vllm_gpu_memory_utilization x GPU) cannot hold its "
                            f"weights ({_gib(params * b // lay.vllm_tp)}), {_gib(ENGINE_OVERHEAD)} overhead and one "
                            f"longest sequence's KV cache ({_gib(per_sequence)}): vLLM refuses to start")
    usable = int(MARGIN * budget)
    if max(phases.values()) > usable:
        worst = max(phases, key=phases.get)
        problems.append(f"the {worst} phase needs {_gib(phases[worst])} per GPU, over {_gib(usable)} "
                        f"({MARGIN:.0%} of {hw.gpu_memory_gib:g} GiB)")
    offloaded = (grad_bytes + optim_bytes if lay.offload_optimizer else 0) + (base if lay.offload_params else 0)
    cpu = offloaded  # every process's shard lives in the node's memory: the whole state (one node)
    if hw.cpu_memory_gib and cpu > MARGIN * hw.cpu_memory_gib * GIB:
        problems.append(f"offloaded states need {_gib(cpu)} of CPU memory, over {MARGIN:.0%} of "
                        f"{hw.cpu_memory_gib:g} GiB")
    return Plan(per_gpu=per_gpu, phases=phases, cpu=cpu, budget=budget, fits=not problems, problems=problems,
                kv_sequences=kv_sequences, disk=disk(m, lay), engine_shortfall=shortfall)


def disk(m: ModelDims, lay: Layout) -> dict[str, int]:
    """One checkpoint (its weights and optimizer files, and in all), final/, and one run at its peak
    ((save_total_limit + 1) checkpoints + final/)."""
    b, trainable = DTYPE_BYTES[lay.dtype], trainable_params(m, lay)
    weights = trainable * FP32 if lay.lora_rank else m.params() * b
    if lay.zero in (1, 2) and not lay.lora_rank:
        weights += m.params() * b  # DeepSpeed's mp_rank_00_model_states.pt holds a 16-bit copy beside the model
    per_trainable = 3 * FP32 if lay.zero >= 1 else 2 * (FP32 if lay.lora_rank else b)  # master + moments / moments
    optimizer = 0 if lay.model_only else trainable * per_trainable
    checkpoint = weights + optimizer + CHECKPOINT_EXTRA
    final = m.params() * b + (trainable * FP32 if lay.lora_rank else 0)  # LoRA: merged model + final/adapter/
    return {"checkpoint_weights": weights, "checkpoint_optimizer": optimizer, "checkpoint": checkpoint,
            "final": final, "run": (lay.save_total_limit + 1) * checkpoint + final}


# knobs in the order that changes the run least: the first four leave the objective and the data as they are
KNOBS = (
    ("rollout.vllm_gpu_memory_utilization: raise it by 0.1",
     lambda lay, hw: 0 < lay.vllm_utilization <= 0.8,
     lambda lay: replace(lay, vllm_utilization=round(lay.vllm_utilization + 0.1, 2)),
     "less of each GPU for training (with sleep mode: only during generation)"),
    ("rollout.vllm_sleep_mode: true", lambda lay, hw: lay.vllm_utilization > 0 and not lay.sleep_mode,
     lambda lay: replace(lay, sleep_mode=True), "a wake-up and a weight push per step"),
    ("gradient_checkpointing: true", lambda lay, hw: not lay.checkpointing,
     lambda lay: replace(lay, checkpointing=True), "about a third more compute in the update"),
    ("micro_batch: halve it", lambda lay, hw: lay.shape.rows > 1,
     lambda lay: replace(lay, shape=replace(lay.shape, rows=lay.shape.rows // 2)),
     "fewer completions per forward; the same update through gradient accumulation"),
    ("DeepSpeed ZeRO-3 (accelerate config workflows/config/accelerate/zero3.yaml)",
     lambda lay, hw: hw.gpus > 1 and lay.zero < 3, lambda lay: replace(lay, zero=3), "communication per layer"),
    ("offload_optimizer_device: cpu (workflows/config/accelerate/zero3_offload.yaml)",
     lambda lay, hw: lay.zero >= 1 and not lay.offload_optimizer,
     lambda lay: replace(lay, offload_optimizer=True), "a slower optimizer step on the CPU, CPU memory"),
    ("model.lora.rank: 64", lambda lay, hw: not lay.lora_rank, lambda lay: replace(lay, lora_rank=64),
     "adapters instead of full fine-tuning: not the paper's recipe"),
    ("model.max_pixels: halve it", lambda lay, hw: lay.shape.visual_tokens > 256,
     lambda lay: replace(lay, shape=replace(lay.shape, visual_tokens=lay.shape.visual_tokens // 2)),
     "coarser images: a different input"),
)


def _badness(p: Plan) -> tuple[int, int, int]:
    """Order of plans for `suggest`: fewer problems, then less missing for the engine to start, then a lower peak."""
    return len(p.problems), p.engine_shortfall, p.peak


def suggest(m: ModelDims, lay: Layout, hw: Hardware) -> list[tuple[str, str, Plan]]:
    """Knobs applied one after another (each kept) until the plan fits: at each step the first knob, in the order
    of KNOBS, that makes the plan better (fewer problems, an engine that starts, a lower peak); knobs that would
    not help are passed over. [(knob, its cost, the plan after it)]: empty when the recipe fits as it is; the last
    plan still fails when no knob helps any more."""
    steps, current, now = [], lay, plan(m, lay, hw)
    for _ in range(16):
        if now.fits:
            break
        for name, applies, apply, cost in KNOBS:
            if not applies(current, hw):
                continue
            after = plan(m, apply(current), hw)
            if _badness(after) < _badness(now):
                current, now = apply(current), after
                steps.append((name, cost, after))
                break
        else:
            break
    return steps


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
