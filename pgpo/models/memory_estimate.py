"""Analytic memory estimate of one rollout micro-batch of Qwen2.5-VL through the trainer's passes (pure Python).

What it counts, in bytes, for a model (ModelDims, read from a Hugging Face config.json) and a micro-batch
(RolloutShape: rows x [prompt text + visual tokens + completion]):
- weights: parameters x dtype size;
- vision: the vision tower's peak ABOVE the weights (no gradient);
- image_forward: the image-conditioned log-prob pass (TRL's forward with its fused LM head, no gradient): the
  vision tower, then the decoder, then the chunked LM head;
- blind: the same pass over the text tokens only (pgpo.training.blind_forward.blind_forward drops the visual columns);
- shaping: k3 + the PGPO weights on [rows, T] (fp32);
- loss / loss_gc: the loss forward + backward with gradient (every weight trainable, the paper's recipe),
  without / with gradient checkpointing; parameter gradients included, optimizer state not (see `optimizer`).
Every component is the peak above the memory held before it (weights + inputs), which is what a planner adds
to the weights. Without gradient a layer's activations are freed before the next layer runs, so the forward
peaks do not grow with depth; with gradient the saved activations do, per layer.

The counts are of the live tensors at each phase's peak (named in the functions below), read from the
implementations this project runs: transformers 5.17's Qwen2.5-VL (RMSNorm in fp32, vision rotary in fp32, the
MLP's gate/up/product), TRL 1.16's ChunkedLogProbFunction (tiles of 4,096 tokens x 32,768 vocabulary entries;
on devices without Triton its torch fallback holds 3 fp32 copies of a tile, with Triton only the tile) and
the attention implementation (`flash_attention_2` and `sdpa` hold no [L, L] score matrix: torch's CPU sdpa
runs its flash kernel with a padding mask too, measured: 39 MiB at L = 3,481 where the scores would be 740 MiB;
`sdpa` gets a bool padding mask [rows, 1, L, L] from transformers, `eager` a dtype mask and the scores). Used by
benchmarks/real_dimensions.py (measured / estimated, side by side) and meant for a GPU memory planner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
TOKEN_CHUNK = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE (tokens per LM-head tile)
VOCAB_CHUNK = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE (vocabulary entries per tile)
FP32 = 4


@dataclass(frozen=True)
class ModelDims:
    """The dimensions of a Qwen2.5-VL that memory depends on."""

    vocab: int
    """Vocabulary size V (rows of the embedding and of the LM head)."""
    hidden: int
    """Text hidden size H."""
    intermediate: int
    """Text MLP width I."""
    layers: int
    """Text decoder layers."""
    heads: int
    """Text attention heads."""
    kv_heads: int
    """Text key/value heads (grouped-query attention)."""
    tied: bool
    """LM head shares the embedding matrix (3B: yes, 7B: no)."""
    vision_hidden: int
    """Vision tower width."""
    vision_intermediate: int
    """Vision MLP width."""
    vision_depth: int
    """Vision blocks."""
    vision_heads: int
    """Vision attention heads."""
    patch: int = 14
    """Patch side in pixels."""
    temporal_patch: int = 2
    """Frames per patch (an image is repeated to fill them)."""
    merge: int = 2
    """Spatial merge: merge x merge patches become one visual token."""
    in_channels: int = 3
    """Image channels."""

    @property
    def kv_dim(self) -> int:
        """Width of the key (or value) projection: kv_heads x head_dim."""
        return self.kv_heads * (self.hidden // self.heads)

    @classmethod
    def from_hf_config(cls, cfg: dict) -> ModelDims:
        """From a config.json dict: the first-release flat layout (text fields at the top) or transformers 5's
        nested `text_config`."""
        text = {**cfg, **cfg.get("text_config", {})}
        vision = cfg["vision_config"]
        return cls(vocab=text["vocab_size"], hidden=text["hidden_size"], intermediate=text["intermediate_size"],
                   layers=text["num_hidden_layers"], heads=text["num_attention_heads"],
                   kv_heads=text["num_key_value_heads"],
                   tied=bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
                   vision_hidden=vision["hidden_size"], vision_intermediate=vision["intermediate_size"],
                   vision_depth=vision["depth"], vision_heads=vision["num_heads"],
                   patch=vision.get("patch_size", 14), temporal_patch=vision.get("temporal_patch_size", 2),
                   merge=vision.get("spatial_merge_size", 2),
                   in_channels=vision.get("in_channels", vision.get("in_chans", 3)))

    def truncated(self, layers: int, vision_depth: int) -> ModelDims:
        """The same widths with fewer text layers / vision blocks (what a depth-truncated benchmark builds)."""
        return replace(self, layers=layers, vision_depth=vision_depth)

    # -- parameter counts (Qwen2: q/k/v with bias, o_proj and the MLP without; vision: every linear with bias) --
    def text_layer_params(self) -> int:
        h, kv = self.hidden, self.kv_dim
        attention = (h * h + h) + 2 * (h * kv + kv) + h * h
        return attention + 3 * h * self.intermediate + 2 * h  # + input and post-attention RMSNorm weights

    def text_params(self) -> int:
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.layers * self.text_layer_params() + self.hidden

    def vision_block_params(self) -> int:
        d, i = self.vision_hidden, self.vision_intermediate
        return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * (d * i + i) + (i * d + d)

    def vision_params(self) -> int:
        d, m2 = self.vision_hidden, self.merge ** 2
        patch_embed = d * self.in_channels * self.temporal_patch * self.patch ** 2  # Conv3d, no bias
        merger = d + (d * m2) ** 2 + d * m2 + d * m2 * self.hidden + self.hidden  # RMSNorm + 2-layer MLP
        return patch_embed + self.vision_depth * self.vision_block_params() + merger

    def params(self) -> int:
        return self.text_params() + self.vision_params()


@dataclass(frozen=True)
class RolloutShape:
    """One micro-batch as TRL lays it out: every row padded to the longest prompt and the longest completion."""

    rows: int
    """Completions in one forward (the micro-batch)."""
    prompt_text_tokens: int
    """Text tokens of the longest prompt (chat template + question), vision markers excluded."""
    visual_tokens: int
    """Visual tokens per image (after the merge; the paper's budget: 1,280)."""
    completion_tokens: int
    """Completion length T (padded)."""
    images: int = 1
    """Images per row."""

    @property
    def seq_len(self) -> int:
        """L: prompt (text + images with their 2 vision markers each) + completion."""
        return self.prompt_text_tokens + self.images * (self.visual_tokens + 2) + self.completion_tokens

    @property
    def blind_len(self) -> int:
        """L' of the blind pass: the visual tokens and markers dropped."""
        return self.prompt_text_tokens + self.completion_tokens


@dataclass(frozen=True)
class Options:
    """How the passes run (what decides which temporaries exist)."""

    dtype_bytes: int = 2
    """Bytes per weight / activation element (bf16: 2)."""
    attention: str = "flash_attention_2"
    """flash_attention_2 (the paper recipe): no mask, no scores; sdpa: a bool padding mask [rows, 1, L, L], no
    scores; eager: a dtype padding mask and, in the layer running, scores [rows, heads, L, L] (dtype, fp32 softmax,
    dtype again)."""

    def __post_init__(self):
        if self.attention not in ("flash_attention_2", "sdpa", "eager"):
            raise ValueError(f"attention must be flash_attention_2, sdpa or eager, got {self.attention!r}")
        if self.lm_head_kernel not in ("triton", "torch"):
            raise ValueError(f"lm_head_kernel must be triton or torch, got {self.lm_head_kernel!r}")
    lm_head_kernel: str = "triton"
    """triton: the fold is a kernel (only the bf16 tile exists), scoring only completion tokens; torch: TRL's
    fallback (3 fp32 copies of a tile alive), scoring every position."""


# -- the pieces -----------------------------------------------------------------------------------------------
def lm_head_tile(tokens: int, o: Options) -> int:
    """Peak of TRL's chunked log-prob forward over `tokens` positions: the [min(N, 4096), 32768] tile in the
    compute dtype, plus (torch fallback) 3 fp32 copies: tile.float(), x logit_scale, x 1/T inside the transform,
    then z, z - max and exp(.) while folding."""
    elements = min(tokens, TOKEN_CHUNK) * VOCAB_CHUNK
    return elements * (o.dtype_bytes + (3 * FP32 if o.lm_head_kernel == "torch" else 0))


def lm_head_tokens(m: ModelDims, rows: int, length: int, completion: int, o: Options) -> int:
    """Positions the fused head projects: completion tokens with Triton, every position (L - 1 per row) without."""
    return rows * (completion if o.lm_head_kernel == "triton" else length - 1)


def decoder_layer_peak(m: ModelDims, tokens: int, rows: int, length: int, o: Options) -> int:
    """Transient peak inside one text decoder layer without gradient (its input excluded).

    MLP phase: RMSNorm output (b) + gate activation, up projection and their product (3 x I x b).
    Attention phase: RMSNorm's fp32 input copy and normalised output (4 + 4 per H, then b), q/k/v (H + 2 kv) x b,
    rotated q/k (H + kv) x b, output H x b; with eager attention the scores [rows, heads, L, L] (b + 4 + b)."""
    b, h, kv = o.dtype_bytes, m.hidden, m.kv_dim
    mlp = tokens * (h * b + 3 * m.intermediate * b)
    attention = tokens * (2 * h * FP32 + (h + 2 * kv) * b + (h + kv) * b + h * b)
    if o.attention == "eager":
        attention += rows * m.heads * length * length * (2 * b + FP32)
    return max(mlp, attention)


def decoder_static(m: ModelDims, tokens: int, rows: int, length: int, o: Options) -> int:
    """What lives through the whole decoder: the residual stream (in + out of a layer), the mRoPE cos/sin
    (fp32, head_dim wide) and the padding mask [rows, 1, L, L] (sdpa: bool, eager: dtype)."""
    head_dim = m.hidden // m.heads
    mask = rows * length * length * {"flash_attention_2": 0, "sdpa": 1, "eager": o.dtype_bytes}[o.attention]
    return 2 * tokens * m.hidden * o.dtype_bytes + 2 * tokens * head_dim * FP32 + mask


def vision_peak(m: ModelDims, patches: int, o: Options) -> int:
    """The vision tower without gradient on `patches` patches (all images of the micro-batch at once).

    Static: the bf16 copy of the pixel rows, the residual stream and its window-ordered copy (2 x D x b), the
    rotary cos/sin (fp32, head_dim). A block's peak is its attention phase: RMSNorm fp32 copy (4 + 4 per D), qkv
    (3 D x b), q and k in fp32 for the rotary embedding (2 x 4), the rotated q in fp32 and two temporaries (3 x 4);
    or its MLP phase (norm output + 3 x Iv x b), whichever is larger (at Qwen2.5-VL's Iv / D = 2.7, attention).
    Attention itself runs per window / per image (flash or sdpa without a mask: no score matrix)."""
    b, d = o.dtype_bytes, m.vision_hidden
    pixel_row = m.in_channels * m.temporal_patch * m.patch ** 2
    head_dim = d // m.vision_heads
    static = patches * (pixel_row * b + 2 * d * b + 2 * head_dim * FP32)
    attention = patches * d * (2 * FP32 + 3 * b + 2 * FP32 + 3 * FP32)
    mlp = patches * (d * b + 3 * m.vision_intermediate * b)
    merged = patches // m.merge ** 2 * m.hidden * b  # the output embeddings
    return static + max(attention, mlp) + merged


def text_forward_peak(m: ModelDims, rows: int, length: int, completion: int, o: Options, visual: int) -> int:
    """The decoder + fused LM head without gradient, above the inputs: input embeddings (and the copy the
    visual features are scattered into), the decoder's static tensors, the largest of a layer's transient and the
    LM head phase (final hidden states, the [N, H] rows it projects, the tile temporaries, fp32 outputs)."""
    b, tokens = o.dtype_bytes, rows * length
    embeds = tokens * m.hidden * b * (2 if visual else 1) + visual * m.hidden * b
    head_n = lm_head_tokens(m, rows, length, completion, o)
    head = tokens * m.hidden * b + head_n * m.hidden * b + lm_head_tile(head_n, o) + 4 * head_n * FP32
    return embeds + decoder_static(m, tokens, rows, length, o) + max(
        decoder_layer_peak(m, tokens, rows, length, o), head)


# -- gradients ------------------------------------------------------------------------------------------------
def saved_per_token_layer(m: ModelDims, o: Options) -> int:
    """Activations one text layer saves for backward per token (no checkpointing): 2 RMSNorms x (fp32 input +
    bf16 normalised output), q/k/v and the attention output (sdpa), gate / SiLU(gate) / up / product (4 x I)."""
    b, h, kv = o.dtype_bytes, m.hidden, m.kv_dim
    norms = 2 * (h * FP32 + h * b)
    attention = (h + 2 * kv + h) * b
    mlp = 4 * m.intermediate * b
    return norms + attention + mlp


def saved_per_patch_block(m: ModelDims, o: Options) -> int:
    """The same for one vision block per patch: 2 RMSNorms, the whole qkv output (v, which attention saves, is a
    view of it), the rotated q and k (bf16), the attention output, the MLP's 4 x Iv."""
    b, d = o.dtype_bytes, m.vision_hidden
    return 2 * (d * FP32 + d * b) + 3 * d * b + 2 * d * b + d * b + 4 * m.vision_intermediate * b


def lm_head_backward(m: ModelDims, head_n: int, o: Options) -> int:
    """TRL's chunked log-prob backward: fp32 accumulators for the head's weight gradient [V, H] and the hidden
    gradient [N, H], their bf16 casts, and the tile. On the torch fallback the fold of a tile holds 7 fp32 copies
    at once (y, z, log p, p, the gradient, is_target - p, its product with the incoming gradient) and a bool one;
    with Triton only the tile. Outside CUDA its fp32 accumulation also upcasts a weight chunk and a token chunk.
    The casts to the dtype happen at its return, after the tiles are freed: the peak is the larger moment."""
    b, h = o.dtype_bytes, m.hidden
    accumulators = (m.vocab + head_n) * h * FP32
    tile = min(head_n, TOKEN_CHUNK) * VOCAB_CHUNK * (b + (7 * FP32 + 1 if o.lm_head_kernel == "torch" else 0))
    upcasts = (VOCAB_CHUNK + min(head_n, TOKEN_CHUNK)) * h * FP32 if o.lm_head_kernel == "torch" else 0
    return accumulators + max(tile + upcasts, (m.vocab + head_n) * h * b)


def loss_peak(m: ModelDims, s: RolloutShape, o: Options, checkpointing: bool, with_grads: bool = True) -> int:
    """Forward + backward with gradient, every weight trainable: the largest of three phases.

    head: the backward starts at the LM head with every saved activation alive (every layer's, or with
    checkpointing every layer's input) and the head's backward temporaries; recompute (checkpointing only): the
    checkpoints, the head's gradient [V, H] and one recomputed text layer or vision block; end: every parameter
    gradient (dtype size; a tied matrix receives two, summed) and a vision-tower-sized transient. `with_grads`
    False leaves the parameter gradients out (a planner counts them with the sharding that decides where they
    live: pgpo.models.resource_plan)."""
    b, rows, length = o.dtype_bytes, s.rows, s.seq_len
    tokens, patches = rows * length, rows * s.images * s.visual_tokens * m.merge ** 2
    head_n = lm_head_tokens(m, rows, length, s.completion_tokens, o)
    layer, block = tokens * saved_per_token_layer(m, o), patches * saved_per_patch_block(m, o)
    if checkpointing:
        saved = m.layers * tokens * m.hidden * b + m.vision_depth * patches * m.vision_hidden * b
    else:
        saved = m.layers * layer + m.vision_depth * block
    embeds = 2 * tokens * m.hidden * b + patches * m.vision_hidden * b
    head = saved + embeds + tokens * m.hidden * b + lm_head_backward(m, head_n, o)
    recompute = saved + embeds + m.vocab * m.hidden * b + max(layer, block) if checkpointing else 0
    grads = (m.params() * b if with_grads else 0) + (m.vocab * m.hidden * b if m.tied else 0)
    return max(head, recompute, grads + vision_peak(m, patches, o))


def optimizer(m: ModelDims, master_fp32: bool = True) -> int:
    """AdamW state for every parameter: 2 fp32 moments, plus an fp32 master copy under mixed precision
    (estimate only; the benchmark does not step an optimizer)."""
    return m.params() * FP32 * (3 if master_fp32 else 2)


def estimate(m: ModelDims, s: RolloutShape, attention: str = "flash_attention_2", lm_head_kernel: str = "triton",
             dtype_bytes: int = 2) -> dict[str, int]:
    """Every component's estimate in bytes (see the module docstring)."""
    o = Options(dtype_bytes=dtype_bytes, attention=attention, lm_head_kernel=lm_head_kernel)
    patches = s.rows * s.images * s.visual_tokens * m.merge ** 2
    visual = s.rows * s.images * s.visual_tokens
    vision = vision_peak(m, patches, o)
    image_text = text_forward_peak(m, s.rows, s.seq_len, s.completion_tokens, o, visual)
    return {
        "weights": m.params() * dtype_bytes,
        "vision": vision,
        "image_forward": max(vision, image_text),
        "blind": text_forward_peak(m, s.rows, s.blind_len, s.completion_tokens, o, 0)
        + 3 * s.rows * s.seq_len * 8,  # + the int64 mRoPE positions of the full sequence
        "shaping": 8 * s.rows * s.completion_tokens * FP32,  # S, log r, I, w, ... [rows, T] fp32
        "loss": loss_peak(m, s, o, checkpointing=False),
        "loss_gc": loss_peak(m, s, o, checkpointing=True),
        "optimizer": optimizer(m),
    }
