"""Evaluation configuration: a profile YAML (workflows/config/eval/{tiny,paper}.yaml) built into dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgpo.config.yamlconf import ConfigError, load_yaml_config

BACKENDS = ("pgpo_vlm", "vllm")


@dataclass
class SamplingConfig:
    """How each question is answered (paper protocol: 8 samples, T 1.0, top-p 1.0, 2048 new tokens)."""

    samples: int = 8
    """k: samples per question; the score is avg@k."""
    temperature: float = 1.0
    """Sampling temperature (> 0: the protocol samples)."""
    top_p: float = 1.0
    """Nucleus mass (1.0 = off); top-k and repetition penalty are always off."""
    max_new_tokens: int = 2048
    """Response budget; the tiny profile needs ~15 tokens and uses 32."""


@dataclass
class BackendConfig:
    """The lmms-eval model that generates: one backend for every method of a table."""

    name: str = "pgpo_vlm"
    """pgpo_vlm (transformers, CPU or GPU) or vllm (lmms-eval's vLLM model: GPU, or CPU with the vLLM-CPU env)."""
    device: str = "cpu"
    """pgpo_vlm: cpu or cuda (several GPUs: launch under `accelerate launch`)."""
    dtype: str = "float32"
    """float32 on CPU, bfloat16 on GPUs."""
    attn_implementation: str = "sdpa"
    """pgpo_vlm attention kernel."""
    batch_size: int = 32
    """Requests per generate call (pgpo_vlm) or per vLLM submission."""
    threads: int = 0
    """Torch CPU threads for pgpo_vlm (0 = torch's default)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs per model replica."""
    data_parallel_size: int = 1
    """vllm: replicas; tp x dp processes under `accelerate launch` / torchrun."""
    gpu_memory_utilization: float = 0.8
    """vllm: share of GPU memory for weights + KV cache."""
    max_model_len: int = 0
    """vllm: context length cap (0 = the model's own)."""
    enforce_eager: bool = False
    """vllm: no compilation or CUDA graphs (starts in seconds, generates slower); for tests and vLLM on CPU."""


@dataclass
class EvalConfig:
    """One evaluation profile: which benchmarks, how to sample, which backend, and the statistics."""

    benchmarks: list[str] = field(default_factory=list)
    """Default benchmark names (pgpo_ prefix optional)."""
    data: str = "results/tiny/data"
    """Data directory of the tiny suites (pgpo make-data); unused by hub benchmarks."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Generation protocol."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """Generation engine."""
    min_pixels: int = 0
    """Image pixel budget floor (0 = the checkpoint processor's, i.e. the training budget)."""
    max_pixels: int = 0
    """Image pixel budget cap (0 = the checkpoint processor's, i.e. the training budget)."""
    limit: int = 0
    """Evaluate only the first N questions of each benchmark (0 = all; smoke tests)."""
    seed: int = 0
    """Seed of sampling and of the bootstrap."""
    bootstrap_samples: int = 10000
    """Resamples of questions for the 95% confidence interval."""


def load_eval_config(path: str | Path, overrides: dict | None = None) -> EvalConfig:
    """Load and validate an evaluation profile YAML (with --set style overrides)."""
    return load_yaml_config(EvalConfig, path, overrides, validate_eval)


def validate_eval(cfg: EvalConfig, where: str) -> None:
    s, b = cfg.sampling, cfg.backend
    if s.samples < 1:
        raise ConfigError(f"{where}: sampling.samples must be >= 1")
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_new_tokens < 1:
        raise ConfigError(f"{where}: sampling needs temperature >= 0, top_p in (0,1], max_new_tokens >= 1")
    if s.samples > 1 and s.temperature == 0:
        raise ConfigError(f"{where}: {s.samples} samples at temperature 0 would be {s.samples} copies of one answer")
    if b.name not in BACKENDS:
        raise ConfigError(f"{where}: backend.name must be one of {list(BACKENDS)}, got {b.name!r}")
    if b.batch_size < 1 or b.tensor_parallel_size < 1 or b.data_parallel_size < 1:
        raise ConfigError(f"{where}: backend batch_size, tensor_parallel_size, data_parallel_size must be >= 1")
    if cfg.min_pixels and cfg.max_pixels and cfg.min_pixels > cfg.max_pixels:
        raise ConfigError(f"{where}: min_pixels ({cfg.min_pixels}) > max_pixels ({cfg.max_pixels})")
    if cfg.bootstrap_samples < 100:
        raise ConfigError(f"{where}: bootstrap_samples must be >= 100")
