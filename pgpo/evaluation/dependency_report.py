"""Where a checkpoint's token visual dependency S_t sits: an HTML page of completions coloured by S, a PNG heatmap
(one row per completion, one column per token) and the sparsity statistics of pgpo.evaluation.probe."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from pgpo.evaluation.probe import probe
from pgpo.tiny.synthetic import TASKS
from pgpo.util.atomic import write_atomic


def _trained_with(checkpoint: str) -> str:
    """The training run's logged rollout whose checkpoint this is (<run>/final), coloured by the weights training
    gave its tokens (pgpo/results/samples_view.py), or "" for a checkpoint without one (the start model)."""
    from pgpo.results.samples_view import pick_sample, sample_html

    sample = pick_sample(Path(checkpoint).parent) if Path(checkpoint).name == "final" else None
    return ("<h3>A rollout of the training run, tokens coloured by the weight their advantage got</h3><p>white: weight"
            f" 1, green: more, red: less, grey: no signal; hover for S</p>{sample_html(sample)}") if sample else ""


def _html(result: dict) -> str:
    top = max((max(e["s"]) for e in result["examples"] if e["s"]), default=1.0) or 1.0
    rows = []
    for e in result["examples"]:
        spans = "".join(
            f'<span title="S={s:.3f}" style="background: rgba(220,40,40,{min(1.0, s / top):.2f});'
            f'{"border-bottom:2px solid #000;" if a else ""}">{html.escape(t)}</span>'
            for t, s, a in zip(e["tokens"], e["s"], e["answer_token"]))
        rows.append(f"<tr><td>{e['task']}</td><td>{'right' if e['correct'] else 'wrong'}</td>"
                    f"<td style='font-family:monospace'>{spans}</td></tr>")
    stats = "".join(f"<tr><td>{t}</td><td>{v['s_answer_mean']:.3f}</td><td>{v['s_other_mean']:.3f}</td>"
                    f"<td>{v['share_above_gate']:.3f}</td><td>{v['avg_at_k']:.3f}</td></tr>"
                    for t, v in result["suites"].items())
    return (f"<html><head><meta charset='utf-8'><title>Token visual dependency</title></head><body>"
            f"<h2>Token visual dependency S_t of {html.escape(result['checkpoint'])}</h2>"
            f"<p>Red = higher S (k3 KL between the policy with and without the image); underlined = inside "
            f"\\boxed{{}}. Share above = tokens whose min-max normalised log(1+S) is at least {result['threshold']}.</p>"
            f"<table border=1 cellpadding=3><tr><th>suite</th><th>mean S answer</th><th>mean S other</th>"
            f"<th>share above {result['threshold']}</th><th>avg@{result['k']}</th></tr>{stats}</table><br>"
            f"<table border=1 cellpadding=3><tr><th>suite</th><th>grade</th><th>completion</th></tr>"
            f"{''.join(rows)}</table>{_trained_with(result['checkpoint'])}</body></html>")


def _png(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = result["examples"]
    width = max((len(e["s"]) for e in ex), default=1)
    grid = np.full((max(1, len(ex)), width), np.nan)
    for i, e in enumerate(ex):
        grid[i, :len(e["s"])] = e["s"]
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.35 * width), 1 + 0.3 * len(ex)))
    im = ax.imshow(grid, aspect="auto", cmap="Reds")
    ax.set_yticks(range(len(ex)), [e["task"] for e in ex], fontsize=7)
    ax.set_xlabel("completion token")
    fig.colorbar(im, ax=ax, label="S_t")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def dependency_report(checkpoint: str, data_dir: str, out: str | Path, items_per_task: int = 8, k: int = 4,
                      seed: int = 0) -> dict:
    """Probe the checkpoint on every synthetic suite and write <out>.html, <out>.png, <out>.json."""
    result = probe(checkpoint, data_dir, list(TASKS), items_per_task, k, seed=seed, examples=2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".html"), _html(result))
    _png(result, out.with_suffix(".png"))
    write_atomic(out.with_suffix(".json"), json.dumps(result, indent=2))
    return result["suites"]
