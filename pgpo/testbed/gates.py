"""Go/no-go gates after a testbed warm start: is this a testbed where token-level credit assignment can matter?

Measured on held-out questions, k responses each sampled at T = 1 (pgpo.testbed.measure):
- filler_entropy: the policy's mean per-token entropy on its sampled filler (nats; uniform over W words: ln W);
- answer_share: the mean share of the configured method's token-advantage mass on the answer token, from its own
  blind view on these samples (PGPO: >= 0.8 means the blind pass is on distribution and S is clean);
- format: share of responses in the <think>...</think>\\boxed{} format;
- accuracy/<skill>: each skill's sampled accuracy (mid range: groups mix right and wrong answers).
Each gate is a closed range [low, high] from the config (null: unbounded). A failing gate stops the workflow
target: the report JSON is written either way, the pass marker only when every gate holds.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pgpo.util.atomic import write_atomic

GATES = ("filler_entropy", "answer_share", "format", "accuracy")


class GateFailed(RuntimeError):
    """A gate's measured value is outside its range; the message names every failing gate and its value."""


@dataclass
class GateSpec:
    """What the gates measure and their ranges (the workflow config's testbed.gates, variant overrides applied)."""

    thresholds: dict[str, list]
    """Gate name -> [low, high] (null = unbounded); names from GATES."""
    items_per_skill: int = 32
    """Held-out questions per skill."""
    samples: int = 4
    """Responses sampled per question (T = 1)."""
    weights_method: str = ""
    """The method (name or YAML path) whose answer share is gated ('' = no answer_share gate)."""
    seed: int = 0
    """Sampling seed."""
    extra: dict = field(default_factory=dict)
    """Free-form labels copied into the report (variant, ...)."""

    def __post_init__(self):
        unknown = sorted(set(self.thresholds) - set(GATES))
        if unknown:
            raise ValueError(f"gates: unknown gate(s) {unknown}; known: {list(GATES)}")
        for name, rng in self.thresholds.items():
            if not (isinstance(rng, (list, tuple)) and len(rng) == 2):
                raise ValueError(f"gates.{name}: expected [low, high] (null for unbounded), got {rng!r}")
            self.thresholds[name] = [_bound_value(b, name) for b in rng]
        if "answer_share" in self.thresholds and not self.weights_method:
            raise ValueError("gates.answer_share needs gates.weights_method (whose token weights are measured)")


def _bound_value(b, name: str) -> float | None:
    """A range bound as a number, or None (unbounded). Command-line overrides may arrive as text ('null', '1.5')."""
    if b is None or (isinstance(b, str) and b.strip().lower() in ("null", "none", "~", "")):
        return None
    try:
        return float(b)
    except (TypeError, ValueError):
        raise ValueError(f"gates.{name}: bound {b!r} is not a number or null") from None


def check_range(value: float, rng) -> bool:
    low, high = rng
    return not math.isnan(value) and (low is None or value >= low) and (high is None or value <= high)


def empirical_entropy(tokens: list[int]) -> float:
    """Entropy (nats) of the distribution of the given tokens (all sampled filler pooled)."""
    counts = Counter(tokens)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values()) if n else float("nan")


def summarise(samples) -> dict:
    """The measured gate values (and context) from pgpo.testbed.measure.Sample rows."""
    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else float("nan")

    filler_tokens = [t for s in samples for t in s.filler_ids]
    weighted = [(s.filler_entropy, len(s.filler_ids)) for s in samples if s.filler_ids]
    out = {
        "filler_entropy": sum(e * n for e, n in weighted) / max(1, sum(n for _, n in weighted)) if weighted
        else float("nan"),
        "format": mean(s.format for s in samples),
        "accuracy": {task: mean(s.correct for s in samples if s.task == task)
                     for task in sorted({s.task for s in samples})},
        "forced_answer": {task: mean(s.forced_p for s in samples if s.task == task)
                          for task in sorted({s.task for s in samples})},
        "filler_word_entropy": empirical_entropy(filler_tokens),
        "filler_length_mean": mean(len(s.filler_ids) for s in samples),
        "responses": len(samples),
    }
    shares = [s.answer_share for s in samples if s.answer_share is not None]
    if shares:
        out["answer_share"] = mean(shares)
    return out


def evaluate(measured: dict, thresholds: dict[str, list]) -> list[dict]:
    """One row per gate (accuracy: one per skill): name, value, range, passed."""
    rows = []
    for name, rng in thresholds.items():
        if name == "accuracy":
            rows += [{"name": f"accuracy/{skill}", "value": v, "range": list(rng), "passed": check_range(v, rng)}
                     for skill, v in measured["accuracy"].items()]
        else:
            value = measured.get(name, float("nan"))
            rows.append({"name": name, "value": value, "range": list(rng), "passed": check_range(value, rng)})
    return rows


def failure_message(report: dict) -> str:
    bad = [g for g in report["gates"] if not g["passed"]]
    shown = "; ".join(f"{g['name']} = {g['value']:.4g} not in [{_bound(g['range'][0], '-inf')}, "
                      f"{_bound(g['range'][1], '+inf')}]" for g in bad)
    return f"testbed gates failed for {report.get('variant', '?')} ({report['checkpoint']}): {shown}"


def _bound(b, unbounded: str) -> str:
    return unbounded if b is None else f"{b:g}"


def run_gates(checkpoint: str | Path, data_dir: str | Path, max_new_tokens: int, spec: GateSpec,
              report_path: str | Path, pass_path: str | Path | None = None) -> dict:
    """Measure, write the report (always), then the pass marker (only if every gate holds); GateFailed otherwise."""

    from pgpo.methods.components import resolve_components
    from pgpo.config.schema import load_method
    from pgpo.data.datasets import load_split
    from pgpo.models.processor import load_processor
    from pgpo.testbed.data import data_skills
    from pgpo.testbed.measure import load_measured_model, measure
    from pgpo.util.provenance import code_version, dir_hash, machine

    start = time.perf_counter()
    data_dir = Path(data_dir)
    skills = data_skills(data_dir)
    records = [r for s in skills for r in load_split(data_dir / f"suite_{s}.jsonl")[:spec.items_per_skill]]
    components, clamp = None, 0.0
    if spec.weights_method:
        method = load_method(spec.weights_method)
        components, clamp = resolve_components(method, spec.weights_method), method.blind_view.clamp_max
    processor = load_processor(checkpoint)
    model = load_measured_model(checkpoint)
    samples = measure(model, processor, records, spec.samples, max_new_tokens, seed=spec.seed,
                      components=components, clamp_max=clamp)
    measured = summarise(samples)
    gates = evaluate(measured, spec.thresholds)
    report = {**spec.extra, "checkpoint": str(checkpoint), "passed": all(g["passed"] for g in gates),
              "gates": gates, "measured": measured, "spec": asdict(spec),
              "seconds": round(time.perf_counter() - start, 1), "code_version": code_version(), "machine": machine(),
              "checkpoint_weights_hash": dir_hash(checkpoint, ("*.safetensors",))}
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(report_path), json.dumps(report, indent=2))
    if not report["passed"]:
        raise GateFailed(failure_message(report))
    if pass_path:
        write_atomic(Path(pass_path), json.dumps(report, indent=2))
    return report
