"""One RL run of the testbed as a record JSON: its labels (arm, seed, variant), the per-step curves the trainer
logged (metrics.jsonl), the area under the training-accuracy curve and the steps to +gain (pgpo.stats.paired), and the
final checkpoint's held-out forced-answer accuracy per question and filler entropy (pgpo.testbed.measure).

The curve names are the config's (`curves`: label -> metrics.jsonl key); a key the run never logged is an error
naming the file and the keys it has, never a silently empty curve."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from pgpo.records.stages import METRICS_FILE, read_metrics, read_run
from pgpo.util.atomic import write_atomic

REQUIRED = ("arm", "seed", "variant", "curves", "accuracy_curve", "gain", "block", "forced")


def read_curves(metrics_path: Path, curves: dict[str, str]) -> dict[str, dict]:
    """label -> {metric, steps, values} from a metrics.jsonl (rows without the key are skipped, not zero-filled)."""
    rows = read_metrics(metrics_path)
    out = {}
    for label, key in curves.items():
        points = [(r["step"], float(r[key])) for r in rows if key in r and r[key] is not None]
        if not points:
            have = sorted({k for r in rows for k in r})
            raise KeyError(f"{metrics_path}: no step logged {key!r} (curve {label!r}); logged keys: {have}")
        out[label] = {"metric": key, "steps": [p[0] for p in points], "values": [p[1] for p in points]}
    return out


def forced_by_skill(samples) -> dict[str, dict]:
    """skill -> {ids, p}: per held-out question (suite order), the mean forced-answer probability of its samples."""
    per: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        per.setdefault(s.task, {}).setdefault(s.question, []).append(s.forced_p)
    return {skill: {"ids": list(q), "p": [sum(v) / len(v) for v in q.values()]} for skill, q in per.items()}


def run_record(run_dir: str | Path, data_dir: str | Path, spec: dict, out: str | Path) -> dict:
    """Read the run's curves, measure its final checkpoint, write and return the record."""

    from pgpo.data.datasets import load_split
    from pgpo.stats.paired import curve_auc, steps_to_gain
    from pgpo.models.processor import load_processor
    from pgpo.testbed.data import data_skills
    from pgpo.testbed.gates import summarise
    from pgpo.testbed.measure import load_measured_model, measure
    from pgpo.testbed.warmstart import variant_length

    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"pgpo testbed record: --spec lacks {missing}")
    start = time.perf_counter()
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    run = read_run(run_dir)
    curves = read_curves(run_dir / METRICS_FILE, spec["curves"])
    acc = curves[spec["accuracy_curve"]]
    gain_step = steps_to_gain(acc["steps"], acc["values"], spec["gain"], block=spec["block"])
    skills = data_skills(data_dir)
    forced = spec["forced"]
    records = [r for s in skills for r in load_split(data_dir / f"suite_{s}.jsonl")[:forced["items_per_skill"]]]
    checkpoint = run_dir / "final"
    processor = load_processor(checkpoint)
    model = load_measured_model(checkpoint)
    samples = measure(model, processor, records, forced["samples"], variant_length(data_dir, spec["variant"]) + 16,
                      seed=forced.get("seed", 0))
    measured = summarise(samples)
    per_skill = forced_by_skill(samples)
    flat = [p for v in per_skill.values() for p in v["p"]]
    record = {
        "arm": spec["arm"], "seed": int(spec["seed"]), "variant": spec["variant"], "run": str(run_dir),
        "method": run.method.get("name", ""), "global_steps": run.global_steps,
        "train_seconds": run.wall_seconds, "curves": curves,
        "auc": curve_auc(acc["steps"], acc["values"]), "steps_to_gain": gain_step,
        "gain": spec["gain"], "block": spec["block"],
        "forced": per_skill, "forced_mean": sum(flat) / len(flat),
        "filler_entropy": measured["filler_entropy"], "filler_word_entropy": measured["filler_word_entropy"],
        "format": measured["format"], "sampled_accuracy": measured["accuracy"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    for key in ("auc", "forced_mean"):
        if not math.isfinite(record[key]):
            raise ValueError(f"{run_dir}: {key} is {record[key]} (curve or measurement broken)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out), json.dumps(record, indent=2))
    return record
