"""A logged rollout (pgpo/training/samples.py) as HTML, each token's background coloured by the weight its advantage
got: white at weight 1 (sequence credit), green above, red below, its dependency S in the tooltip. The table pages
show one per method (the newest logged step, the first sample with a learning signal), so which tokens a method
credits is seen beside its numbers."""

from __future__ import annotations

import html
from pathlib import Path


def token_colour(weight: float | None, top: float = 3.0) -> str:
    """Weight -> CSS background: 1 is white, `top` and above full green, 0 full red; None (no signal) grey."""
    if weight is None:
        return "#eeeeee"
    if weight >= 1:
        a = min(1.0, (weight - 1) / (top - 1))
        return f"rgba(0,160,0,{a:.2f})"
    return f"rgba(210,0,0,{min(1.0, 1 - weight):.2f})"


def sample_html(sample: dict) -> str:
    """One rollout: its prompt id, reward, advantage, then the response token by token."""
    weights = sample.get("weights") or [None] * len(sample["tokens"])
    dependency = sample.get("dependency") or [None] * len(sample["tokens"])
    spans = []
    for token, w, s in zip(sample["tokens"], weights, dependency):
        tip = f"weight {w:.3f}" if w is not None else "no signal"
        tip += f", S {s:.4f}" if s is not None else ""
        spans.append(f"<span title='{html.escape(tip)}' style='background:{token_colour(w)};white-space:pre'>"
                     f"{html.escape(token)}</span>")
    reward = "unscorable" if sample["reward"] is None else f"{sample['reward']:.2f}"
    return (f"<div style='font-family:monospace;margin:4px 0'><small>step {sample['step']}, {html.escape(sample['prompt_id'])}, "
            f"reward {reward}, advantage {sample['advantage']:+.3f}</small><br>{''.join(spans)}</div>")


def pick_sample(run_dir: str | Path) -> dict | None:
    """The run's newest logged step's first sample with a learning signal (else its first sample), or None."""
    import sys

    from pgpo.records.stages import read_samples
    from pgpo.util.errors import DataError

    try:
        samples = read_samples(run_dir)
    except DataError as e:  # a picture beside the table: a damaged file leaves it out, named, not the table
        print(f"warning: {e}; no sampled response shown for it", file=sys.stderr)
        return None
    if not samples:
        return None
    newest = [s for s in samples if s["step"] == samples[-1]["step"]]
    return next((s for s in newest if s["advantage"] != 0), newest[0])


def samples_section(curve_runs: dict[str, dict[str, str]]) -> str:
    """The table page's section: one sampled response per row (its first seed's training run), or "" if none."""
    rows = []
    for label, by_seed in curve_runs.items():
        first = next(iter(by_seed.values()), None)
        sample = pick_sample(first) if first else None
        if sample is not None:
            rows.append(f"<h4>{html.escape(label)}</h4>{sample_html(sample)}")
    if not rows:
        return ""
    return ("<h3>A sampled response per method, tokens coloured by the weight of their advantage</h3><p>white: "
            "weight 1 (the sequence's credit), green: more, red: less, grey: no signal (advantage 0); hover for the "
            "weight and the visual dependency S</p>" + "".join(rows))
