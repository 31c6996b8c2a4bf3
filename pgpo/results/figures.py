"""Figures of a results target: training curves per row (mean over seeds, band = the seeds' range), the warm-start
curve, and, for a parameter sweep, a heatmap over its two numeric parameters with the off-grid variants beside it.

Everything is read from the records the stages wrote (metrics.jsonl, run.json's method record, warmstart.json,
the table's cells); nothing here knows a method or a parameter by name. Figures have fixed sizes and dpi and use
the Agg backend, so the same records give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgpo.config.schema import ConfigError
from pgpo.data.datasets import DataError
from pgpo.records.stages import read_metrics, read_run
from pgpo.util.jsonfile import read_json

# Curve panels: these generic keys when any run logged them, then every key under these prefixes (sorted), at most
# MAX_PANELS in all. `dependency/*` are the visual-dependency statistics the dependency-aware methods log.
CURVE_KEYS = ("reward", "rewards/accuracy_reward/mean", "completions/mean_length")
CURVE_PREFIXES = ("dependency/",)
MAX_PANELS = 8
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version string: bytes depend on the data only
    _pyplot().close(fig)
    return path


# ---------------------------------------------------------------- training curves
@dataclass
class Curve:
    """One metric of one row over training steps, aggregated over the row's seeds."""

    steps: np.ndarray
    """optimizer steps at which at least one seed logged a finite value"""
    mean: np.ndarray
    """mean over the seeds that logged the step"""
    low: np.ndarray
    """smallest seed value at the step (the band's lower edge)"""
    high: np.ndarray
    """largest seed value at the step (the band's upper edge)"""
    n_seeds: np.ndarray
    """how many seeds contributed at the step"""


def curve_names(labels: dict[str, dict], names: list[str]) -> dict[str, str]:
    """Training name -> row name: the label fields that tell the runs apart, without the seed (a name without a
    label stays itself)."""
    known = {n: labels[n] for n in names if n in labels}
    fields = [k for k in dict.fromkeys(k for lab in known.values() for k in lab) if k != "seed"]
    varying = [k for k in fields if len({str(lab.get(k)) for lab in known.values()}) > 1] or fields
    return {n: " ".join(str(known[n][k]) for k in varying if k in known[n]) if n in known else n for n in names}


def curve_keys(metrics: dict[str, list[dict]], keys=CURVE_KEYS, prefixes=CURVE_PREFIXES,
               limit: int = MAX_PANELS) -> list[str]:
    """The panels: the generic keys any run logged, then the logged keys under `prefixes`, at most `limit`."""
    logged = {k for rows in metrics.values() for r in rows for k, v in r.items() if _is_number(v)}
    under = sorted(k for k in logged if k.startswith(tuple(prefixes)) and k not in keys)
    return ([k for k in keys if k in logged] + under)[:limit]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(seeds: list[list[dict]], key: str) -> Curve | None:
    """Mean and range over seeds of `key` at every step any seed logged it (None: no seed did)."""
    by_step: dict[int, list[float]] = {}
    for rows in seeds:
        for r in rows:
            v = r.get(key)
            if _is_number(v) and math.isfinite(v):
                by_step.setdefault(r["step"], []).append(float(v))
    if not by_step:
        return None
    steps = sorted(by_step)
    vals = [np.array(by_step[s]) for s in steps]
    return Curve(np.array(steps), np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
                 np.array([v.max() for v in vals]), np.array([len(v) for v in vals]))


def training_curves(metrics: dict[str, list[dict]], labels: dict[str, dict],
                    keys: list[str]) -> dict[str, dict[str, Curve]]:
    """Row name -> key -> Curve, rows in the order their first training appears in `metrics`."""
    names = curve_names(labels, list(metrics))
    rows: dict[str, list[list[dict]]] = {}
    for name, series in metrics.items():
        rows.setdefault(names[name], []).append(series)
    out = {}
    for row, seeds in rows.items():
        out[row] = {k: c for k in keys if (c := aggregate(seeds, k)) is not None}
    return out


def _colours(n: int):
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_curves(curves: dict[str, dict[str, Curve]], keys: list[str], path: str | Path, title: str) -> Path:
    """One panel per key, one line per row (mean over seeds) with a band from the smallest to the largest seed;
    the legend gets a panel of its own so it covers no line."""
    plt = _pyplot()
    ncols = 3
    nrows = max(1, math.ceil((len(keys) + 1) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    flat = list(axes.flat)
    colours = dict(zip(curves, _colours(len(curves))))
    for ax, key in zip(flat, keys):
        for row, by_key in curves.items():
            c = by_key.get(key)
            if c is None:
                continue
            ax.plot(c.steps, c.mean, color=colours[row], lw=1.4, marker="o" if len(c.steps) <= 12 else None, ms=3)
            ax.fill_between(c.steps, c.low, c.high, color=colours[row], alpha=0.18, lw=0)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    legend_ax = flat[len(keys)]
    legend_ax.axis("off")
    if curves:
        seeds = {row: max((int(c.n_seeds.max()) for c in by_key.values()), default=0) for row, by_key in curves.items()}
        handles = [plt.Line2D([], [], color=colours[r], lw=2) for r in curves]
        legend_ax.legend(handles, [f"{r} ({seeds[r]} seed{'s' if seeds[r] != 1 else ''})" for r in curves],
                         loc="center", fontsize=8, frameon=False, ncol=1 if len(curves) <= 10 else 2)
    else:
        legend_ax.text(0.5, 0.5, "no training runs in this target", ha="center", va="center")
    for ax in flat[len(keys) + 1:]:
        ax.axis("off")
    fig.suptitle(f"{title}: training curves (line = mean over seeds, band = seed range)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- warm start
def warmstart_panels(record: dict, source: str = "warm-start record") -> dict[str, dict[str, tuple[list, list]]]:
    """Panel -> line -> (steps, values) from a warm-start record's curve: a numeric field is one panel with one
    line, a field holding numbers by name (per-suite accuracies) is one panel with a line per name."""
    curve = record.get("curve") or []
    if not curve:
        raise DataError(f"{source}: empty 'curve' (the warm start logs at least its last step)")
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for row in curve:
        for key, v in row.items():
            if key in ("step", "seconds"):
                continue
            items = v.items() if isinstance(v, dict) else [(key, v)]
            for line, value in items:
                if _is_number(value):
                    steps, values = panels.setdefault(key, {}).setdefault(line, ([], []))
                    steps.append(row["step"])
                    values.append(float(value))
    return panels


def plot_warmstart(record: dict, path: str | Path, title: str = "Warm start",
                   source: str = "warm-start record") -> Path:
    plt = _pyplot()
    panels = warmstart_panels(record, source)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.4), squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels.items()):
        for (line, (steps, values)), colour in zip(lines.items(), _colours(len(lines))):
            ax.plot(steps, values, marker="o", ms=3, color=colour, label=line if len(lines) > 1 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    cfg = record.get("config", {})
    extra = ", ".join(f"{k}={cfg[k]}" for k in ("steps", "batch_size", "lr") if k in cfg)
    fig.suptitle(f"{title} ({extra})" if extra else title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- parameter sweep
def flatten(record: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; scalars only."""
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (str, int, float, bool)):
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class Sweep:
    """Rows of a one-method parameter sweep laid out on their two numeric parameters."""

    x_key: str
    """the parameter on the x axis (the varying numeric one with most distinct values)"""
    y_key: str
    """the parameter on the y axis"""
    x_values: list
    """the grid's x values, ascending"""
    y_values: list
    """the grid's y values, ascending"""
    matrix: np.ndarray
    """[len(y_values), len(x_values)] the cell values (the grid is pruned until every cell has a row)"""
    low: np.ndarray
    """the cells' 95% interval, lower bound"""
    high: np.ndarray
    """the cells' 95% interval, upper bound"""
    cells: dict = field(default_factory=dict)
    """(x, y) -> the row label drawn in that cell"""
    reference: dict = field(default_factory=dict)
    """the other varying parameters' values on the grid (their most common value)"""
    off_grid: list = field(default_factory=list)
    """(label, {parameter: the value that puts it off the grid}) of every row not drawn in the grid"""
    off_values: list = field(default_factory=list)
    """(mean, low, high) of each off-grid row"""


def _short(keys: list[str]) -> dict[str, str]:
    """Dotted keys -> their last part, unless two share it."""
    keys = list(dict.fromkeys(keys))
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def find_sweep(points: dict[str, dict], values: dict[str, dict]) -> Sweep:
    """points: row label -> flat parameter record; values: row label -> {'mean', 'ci95'}.

    The axes are the two numeric parameters that vary most; the grid keeps the rows at the most common value of
    every other varying parameter, then drops the least-filled x or y value until every cell has a row. The rest
    (a parameter off its common value, an axis value with missing partners, a repeated point) are off-grid."""
    labels = [lab for lab in points if points[lab] is not None]
    if len(labels) < 2:
        raise DataError(f"a parameter sweep needs at least 2 trained rows with a method record, got {labels}")
    common = [k for k in points[labels[0]] if all(k in points[lab] for lab in labels)]
    varying = [k for k in common if len({json.dumps(points[lab][k]) for lab in labels}) > 1]
    numeric = [k for k in varying if all(_is_number(points[lab][k]) for lab in labels)]
    if len(numeric) < 2:
        raise DataError(f"a heatmap needs two numeric parameters that vary across the rows; varying: {varying}")
    numeric.sort(key=lambda k: -len({points[lab][k] for lab in labels}))  # stable: record order breaks ties
    x_key, y_key = numeric[:2]
    others = [k for k in varying if k not in (x_key, y_key)]
    reference = {k: Counter(json.dumps(points[lab][k]) for lab in labels).most_common(1)[0][0] for k in others}
    cells: dict[tuple, str] = {}
    for lab in labels:
        p = points[lab]
        if all(json.dumps(p[k]) == reference[k] for k in others):
            cells.setdefault((p[x_key], p[y_key]), lab)
    xs, ys = sorted({x for x, _ in cells}), sorted({y for _, y in cells})
    while xs and ys:
        fill = [(sum((x, y) in cells for y in ys) / len(ys), 0, i) for i, x in enumerate(xs)]
        fill += [(sum((x, y) in cells for x in xs) / len(xs), 1, i) for i, y in enumerate(ys)]
        worst = min(fill)
        if worst[0] == 1.0:
            break
        (xs if worst[1] == 0 else ys).pop(worst[2])
    grid = {(x, y): lab for (x, y), lab in cells.items() if x in xs and y in ys}
    shape = (len(ys), len(xs))
    matrix, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for (x, y), lab in grid.items():
        matrix[ys.index(y), xs.index(x)] = values[lab]["mean"]
        low[ys.index(y), xs.index(x)], high[ys.index(y), xs.index(x)] = values[lab]["ci95"]
    on_grid = set(grid.values())
    sweep = Sweep(x_key, y_key, xs, ys, matrix, low, high, grid, {k: json.loads(v) for k, v in reference.items()})
    for lab in labels:
        if lab in on_grid:
            continue
        p = points[lab]
        why = {k: p[k] for k in others if json.dumps(p[k]) != reference[k]}
        if p[x_key] not in xs:
            why[x_key] = p[x_key]
        if p[y_key] not in ys:
            why[y_key] = p[y_key]
        if not why:  # the same point as a grid cell: say which parameters it shares
            why = {x_key: p[x_key], y_key: p[y_key]}
        sweep.off_grid.append((lab, why))
        sweep.off_values.append((values[lab]["mean"], *values[lab]["ci95"]))
    return sweep


def _fmt(v) -> str:
    return f"{v:g}" if _is_number(v) else str(v)


def plot_sweep(sweep: Sweep, path: str | Path, title: str, value_name: str = "avg") -> Path:
    """Heatmap of the grid (value %, its 95% CI and the row label in every cell) and, beside it, the off-grid
    variants as points with their 95% CI on the same colour scale."""
    plt = _pyplot()
    from matplotlib.colors import Normalize

    names = _short([sweep.x_key, sweep.y_key, *sweep.reference, *{k for _, w in sweep.off_grid for k in w}])
    scale = [v for v in sweep.matrix.flat if not np.isnan(v)] + [m for m, _, _ in sweep.off_values]
    lo, hi = min(scale) * 100, max(scale) * 100
    norm = Normalize(lo - 0.5, hi + 0.5) if hi - lo < 1e-6 else Normalize(lo, hi)  # all equal: a 1-point scale
    cmap = plt.get_cmap("viridis")
    width = 1.6 + 1.5 * len(sweep.x_values) + (4.4 if sweep.off_grid else 0)
    height = max(3.4, 1.2 + 1.0 * max(len(sweep.y_values), 0.55 * len(sweep.off_grid)))
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(1, 2 if sweep.off_grid else 1,
                            width_ratios=[1.5 * len(sweep.x_values) + 1.2, 4.0] if sweep.off_grid else None)
    ax = fig.add_subplot(grid[0, 0])
    image = ax.imshow(sweep.matrix * 100, cmap=cmap, norm=norm, origin="lower", aspect="auto")
    for (x, y), lab in sweep.cells.items():
        i, j = sweep.y_values.index(y), sweep.x_values.index(x)
        value = sweep.matrix[i, j] * 100
        shade = "black" if norm(value) > 0.6 else "white"
        ax.text(j, i, f"{lab}\n{value:.1f}\n[{sweep.low[i, j] * 100:.1f}, {sweep.high[i, j] * 100:.1f}]",
                ha="center", va="center", fontsize=7, color=shade)
    ax.set_xticks(range(len(sweep.x_values)), [_fmt(v) for v in sweep.x_values])
    ax.set_yticks(range(len(sweep.y_values)), [_fmt(v) for v in sweep.y_values])
    ax.set_xlabel(names[sweep.x_key])
    ax.set_ylabel(names[sweep.y_key])
    fixed = ", ".join(f"{names[k]}={_fmt(v)}" for k, v in sweep.reference.items())
    ax.set_title(f"{value_name} (%) on the grid" + (f" ({fixed})" if fixed else ""), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label(f"{value_name} (%)", fontsize=8)
    if sweep.off_grid:
        side = fig.add_subplot(grid[0, 1])
        means = np.array([m for m, _, _ in sweep.off_values]) * 100
        err = [means - np.array([lo for _, lo, _ in sweep.off_values]) * 100,
               np.array([hi for _, _, hi in sweep.off_values]) * 100 - means]
        pos = np.arange(len(means))[::-1]
        cells = sweep.matrix[~np.isnan(sweep.matrix)] * 100
        side.axvspan(cells.min(), cells.max(), color="0.85", lw=0, label="range of the grid cells")
        for p, m, lo, hi in zip(pos, means, *err):  # points, not bars: the scale need not start at 0
            side.errorbar(m, p, xerr=[[lo], [hi]], fmt="o", ms=8, color=cmap(norm(m)), ecolor="0.2", capsize=3)
        side.set_ylim(-0.7, len(means) - 0.3)
        side.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
        side.set_yticks(pos, [f"{lab}\n" + ", ".join(f"{names[k]}={_fmt(v)}" for k, v in why.items())
                              for lab, why in sweep.off_grid], fontsize=7)
        side.yaxis.tick_right()
        side.set_xlabel(f"{value_name} (%), 95% CI", fontsize=8)
        side.set_title("off-grid variants", fontsize=9)
        side.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def row_methods(row_runs: dict[str, list[str | Path | None]]) -> dict[str, dict | None]:
    """Table row -> the flat method record (run.json 'method') of the trainings it came from (row_runs: row label ->
    the training directory of each seed, None for the start model), None for a row no training wrote (a base
    model). The seeds of a row must share the record."""
    out: dict[str, dict | None] = {}
    for label, runs in row_runs.items():
        records = [flatten(read_run(d).method) if d else None for d in runs]
        if any(r != records[0] for r in records):
            raise DataError(f"row {label!r}: its seeds were trained with different method records ({runs})")
        out[label] = records[0] if records else None
    return out


# ---------------------------------------------------------------- one target
def _row_runs(spec: dict) -> dict[str, list]:
    """The training directories of every row of the table (the spec's row_runs, planned with its rows)."""
    runs = spec.get("row_runs") or {}
    missing = [label for label in spec["rows"] if label not in runs]
    if missing:
        raise ConfigError(f"table spec: row_runs names no training runs for row(s) {missing}")
    return {label: runs[label] for label in spec["rows"]}


def write_figures(spec: dict, table: dict, outputs: dict[str, str]) -> list[Path]:
    """The figures a table job declares: outputs maps 'curves' / 'heatmap' / 'warmstart' to the file to write."""
    unknown = set(outputs) - {"curves", "heatmap", "warmstart"}
    if unknown:
        raise ConfigError(f"table spec 'figures': unknown figure kind(s) {sorted(unknown)}")
    files = []
    title = spec.get("title", spec.get("target", ""))
    if "curves" in outputs:
        metrics = {name: read_metrics(d) for name, d in (spec.get("trainings") or {}).items()}
        keys = curve_keys(metrics)
        files.append(plot_curves(training_curves(metrics, spec.get("labels") or {}, keys), keys,
                                 outputs["curves"], title))
    if "heatmap" in outputs:
        column = "avg" if table.get("average_over") else table["benchmarks"][0]
        values = {lab: row[column] for lab, row in table["rows"].items()}
        try:
            sweep = find_sweep(row_methods(_row_runs(spec)), values)
        except DataError as e:
            raise DataError(f"{spec.get('target', 'table')} heatmap: {e}") from None
        files.append(plot_sweep(sweep, outputs["heatmap"], title, column))
    if "warmstart" in outputs:
        if not spec.get("warmstart"):
            raise ConfigError("table spec asks for the warm-start figure but names no warm-start record ('warmstart')")
        record = Path(spec["warmstart"])
        if not record.exists():
            raise FileNotFoundError(f"{record}: missing warm-start record (run the warm_start rule)")
        files.append(plot_warmstart(read_json(record, "`pgpo warm-start`", what="warm-start record"), outputs["warmstart"], source=str(record)))
    return files
