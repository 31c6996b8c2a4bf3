"""Tables from evaluation results: cells are avg@k, mean over seeds with a 95% interval over seeds AND questions.

A cell's interval comes from a two-level bootstrap: resample the seeds, then the questions within each resampled
seed's result, and take the mean. With few seeds it is wide on purpose: seed-to-seed variation is real variation.
Inputs are the per-benchmark result JSONs written by `pgpo score`; every cell keeps its provenance (result paths,
samples hashes, MLflow run ids when a tracking map is given).
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgpo.records.stages import read_eval_result, read_run, result_path
from pgpo.util.atomic import write_atomic
from pgpo.util.provenance import short_digest


@dataclass
class Cell:
    """One (row, benchmark) cell: per-seed per-question means plus provenance."""

    per_seed: list[np.ndarray] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)

    def stats(self, bootstrap: int = 2000, seed: int = 0) -> dict:
        means = [float(v.mean()) for v in self.per_seed]
        lo, hi = hierarchical_ci(self.per_seed, bootstrap, seed)
        return {"mean": float(np.mean(means)), "ci95": [lo, hi], "per_seed": means, "n_seeds": len(means)}


def hierarchical_ci(per_seed: list[np.ndarray], bootstrap: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the grand mean under resampling of seeds, then of questions within seeds."""
    return _two_level_ci([[v] for v in per_seed], bootstrap, seed)


def _two_level_ci(per_seed: list[list[np.ndarray]], bootstrap: int, seed: int) -> tuple[float, float]:
    """per_seed[i] = one array of question means per benchmark; the statistic is the mean over benchmarks.
    Resample seeds, then questions within every (seed, benchmark)."""
    rng = np.random.default_rng(seed)
    stats = np.empty(bootstrap)
    for b in range(bootstrap):
        picks = rng.integers(0, len(per_seed), size=len(per_seed))
        stats[b] = np.mean([np.mean([v[rng.integers(0, len(v), size=len(v))].mean() for v in per_seed[i]])
                            for i in picks])
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def build_table(runs: dict[str, list[Path]], benchmarks: list[str], average_over: list[str],
                tracking: dict | None = None, bootstrap: int = 2000,
                row_runs: dict[str, list[str | None]] | None = None, view: str = "mean") -> dict | None:
    """runs: row label -> evaluation directories (one per seed) holding <benchmark>.json; row_runs: row label ->
    the training directory each of them scored (None: the start model), whose recipe hash the provenance names.

    Returns {"rows": {label: {bench: stats, ..., "avg": stats}}, "provenance": [...]}. `avg` is the mean over
    `average_over` (the paper's Avg column), its interval from the same two-level bootstrap per seed. `view`: the
    per-question score the cells average: "mean" (avg@k, the paper's metric), "pass_at_k" or "maj_at_k" (the same
    k samples; None when a result predates them)."""
    tracking = tracking or {}
    rows, provenance = {}, []
    for label, run_dirs in runs.items():
        cells = {b: Cell() for b in benchmarks}
        trained = (row_runs or {}).get(label) or [None] * len(run_dirs)
        for run_dir, training in zip(run_dirs, trained, strict=True):
            recipe = read_run(training).config_hash if training else ""
            for b in benchmarks:
                r = read_eval_result(run_dir, b)
                if any(view not in q for q in r.per_question):
                    return None
                cells[b].per_seed.append(np.array([q[view] for q in r.per_question]))
                prov = {"row": label, "benchmark": b, "result": str(result_path(run_dir, b)),
                        "samples_sha256": r.samples_sha256, "checkpoint_hash": r.checkpoint_hash,
                        "avg_at_k": r.avg_at_k, "k": r.k,
                        "n_failed": r.n_failed + len(r.invalid_gold),
                        "config_hash": recipe, "mlflow_run_id": tracking.get(str(Path(run_dir)), "")}
                cells[b].sources.append(prov)
                provenance.append(prov)
        row = {b: c.stats(bootstrap) for b, c in cells.items()}
        if average_over:
            row["avg"] = _average_stats(cells, average_over, bootstrap)
        rows[label] = row
    return {"rows": rows, "benchmarks": benchmarks, "average_over": average_over, "provenance": provenance,
            "view": view}


VIEWS = {"pass_at_k": "pass@k: a question counts as solved if any of its k samples is right",
         "maj_at_k": "maj@k: the majority answer of the k samples (equivalent answers vote together) is right"}


def views_markdown(views: dict[str, dict], column_names: dict[str, str] | None = None) -> str:
    """The extra views (pass@k, maj@k) as markdown sections below the avg@k table."""
    names, out = column_names or {}, []
    for view, table in views.items():
        cols = table["benchmarks"] + (["avg"] if table["average_over"] else [])
        out += ["", f"## Extra view: {VIEWS[view]}", "",
                "in %, mean over seeds [95% CI over seeds and questions]; avg@k above stays the paper's metric", "",
                "| row | " + " | ".join(names.get(c, c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {label} | " + " | ".join(_fmt(row[c]) for c in cols) + " |" for label, row in table["rows"].items()]
    return "\n".join(out)


def _average_stats(cells: dict[str, Cell], average_over: list[str], bootstrap: int, seed: int = 0) -> dict:
    """Mean over benchmarks of avg@k; interval: resample seeds, then questions within every benchmark."""
    n_seeds = len(cells[average_over[0]].per_seed)
    groups = [[cells[b].per_seed[i] for b in average_over] for i in range(n_seeds)]
    per_seed_avg = [float(np.mean([v.mean() for v in g])) for g in groups]
    lo, hi = _two_level_ci(groups, bootstrap, seed)
    return {"mean": float(np.mean(per_seed_avg)), "ci95": [lo, hi], "per_seed": per_seed_avg, "n_seeds": n_seeds}


def table_records(table: dict) -> list[dict]:
    """One flat record per row (for MLflow's log_table): mean and CI bounds of every column, in %."""
    cols = table["benchmarks"] + (["avg"] if table["average_over"] else [])
    out = []
    for label, row in table["rows"].items():
        rec = {"row": label}
        for c in cols:
            rec[c] = round(row[c]["mean"] * 100, 2)
            rec[f"{c}_ci_low"], rec[f"{c}_ci_high"] = (round(v * 100, 2) for v in row[c]["ci95"])
        out.append(rec)
    return out


def _fmt(s: dict, scale: float = 100.0) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean'] * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}]"


def write_table(table: dict, prefix: str | Path, title: str, column_names: dict[str, str] | None = None,
                bars: bool = True, note: str = "", extra_md: str = "") -> list[Path]:
    """<prefix>.md (mean [95% CI], %), <prefix>.csv (one line per cell with provenance), <prefix>.png (bars per
    benchmark; `bars=False` for a target whose figure is drawn elsewhere, e.g. a sweep's heatmap). `note`: a line
    under the title (the quick profile says it is a plumbing check); `extra_md`: sections below (views_markdown)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = column_names or {}
    cols = table["benchmarks"] + (["avg"] if table["average_over"] else [])
    head = [names.get(c, c) for c in cols]
    lines = [f"# {title}", "", *([f"**{note}**", ""] if note else []),
             "avg@k in %, mean over seeds [95% CI over seeds and questions]", "",
             "| row | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in table["rows"].items():
        lines.append(f"| {label} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    if table["average_over"]:
        lines += ["", f"avg = mean over {', '.join(names.get(b, b) for b in table['average_over'])}"]
    lines += [extra_md] if extra_md else []
    md = prefix.with_suffix(".md")
    write_atomic(md, "\n".join(lines) + "\n")
    csv_path = prefix.with_suffix(".csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "column", "mean", "ci95_low", "ci95_high", "n_seeds", "per_seed", "failed_items",
                    "mlflow_run_ids", "config_hashes", "samples_sha256", "results"])
        for label, row in table["rows"].items():
            for c in cols:
                src = [p for p in table["provenance"] if p["row"] == label and (c == "avg" or p["benchmark"] == c)]
                s = row[c]
                w.writerow([label, names.get(c, c), f"{s['mean']:.6f}", f"{s['ci95'][0]:.6f}",
                            f"{s['ci95'][1]:.6f}", s["n_seeds"], ";".join(f"{v:.6f}" for v in s["per_seed"]),
                            sum(p["n_failed"] for p in src),
                            ";".join(sorted({p["mlflow_run_id"] for p in src if p["mlflow_run_id"]})),
                            ";".join(sorted({p["config_hash"] for p in src if p["config_hash"]})),
                            ";".join(sorted({short_digest(p["samples_sha256"]) for p in src})),
                            ";".join(sorted({p["result"] for p in src}))])
    if not bars:
        return [md, csv_path]
    png = prefix.with_suffix(".png")
    _plot(table, cols, head, png, title)
    return [md, csv_path, png]


def write_table_html(table: dict, path: str | Path, title: str, column_names: dict[str, str] | None = None,
                     extra_html: str = "", note: str = "") -> Path:
    """The .md table as one self-contained HTML page (what `snakemake --report` can show inline); `extra_html`: a
    section below it (the paired difference view)."""
    names = column_names or {}
    cols = table["benchmarks"] + (["avg"] if table["average_over"] else [])
    cell = "<td style='padding:2px 8px;text-align:right'>"
    body = "".join(f"<tr><th style='text-align:left;padding:2px 8px'>{html.escape(label)}</th>"
                   + "".join(f"{cell}{_fmt(row[c])}</td>" for c in cols) + "</tr>"
                   for label, row in table["rows"].items())
    avg_note = (f"<p>avg = mean over {html.escape(', '.join(names.get(b, b) for b in table['average_over']))}</p>"
                if table["average_over"] else "")
    path = Path(path)
    write_atomic(path, f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
                       f"<h3>{html.escape(title)}</h3>{f'<p><b>{html.escape(note)}</b></p>' if note else ''}<p>avg@k in %, mean over seeds [95% CI over seeds and "
                       f"questions]</p><table border=1 style='border-collapse:collapse;font-family:sans-serif'><tr>"
                       f"<th>row</th>{''.join(f'<th>{html.escape(names.get(c, c))}</th>' for c in cols)}</tr>"
                       f"{body}</table>{avg_note}{extra_html}</body></html>\n")
    return path


def _plot(table: dict, cols: list[str], head: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(table["rows"])
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(min(13.0, 4 + 0.25 * len(cols) * max(1, len(labels))), 4.2))
    for i, label in enumerate(labels):
        row = table["rows"][label]
        means = np.array([row[c]["mean"] for c in cols]) * 100
        lo = means - np.array([row[c]["ci95"][0] for c in cols]) * 100
        hi = np.array([row[c]["ci95"][1] for c in cols]) * 100 - means
        ax.bar(np.arange(len(cols)) + i * width, means, width, yerr=[lo, hi], capsize=2, label=label)
    ax.set_xticks(np.arange(len(cols)) + width * (len(labels) - 1) / 2)
    ax.set_xticklabels(head, rotation=30, ha="right")
    ax.set_ylabel("avg@k (%)")
    ax.set_title(title)
    # below the axes: inside, the legend of many rows covers bars
    ax.legend(fontsize=7, ncol=min(len(labels), 8), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
