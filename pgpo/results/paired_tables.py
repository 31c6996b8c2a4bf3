"""Difference-to-reference views of a results table: every row minus its reference row (named in the workflow
config, `paired.reference.<target>`), paired by question and seed (pgpo.stats.paired), on every benchmark and the Avg,
plus paired differences of the training curves (mean level = area under the curve / steps, and block means).

Written next to the table: <target>.diff.md (the view), <target>.diff.csv (one line per row x column),
<target>.diff.json (everything, the power planner reads it) and an HTML fragment for the table's page. A row with
one evaluation and no seed (the start model) is paired with every seed of its reference: the same start model is
where every seed begins. Nothing here knows a method or a parameter by name.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np

from pgpo.data.datasets import DataError
from pgpo.records.stages import read_eval_result, result_path
from pgpo.stats.paired import (
    PairingError,
    block_means,
    curve_auc,
    detect_factor,
    paired_question_difference,
    paired_seed_difference,
)
from pgpo.util.atomic import write_atomic


def load_questions(eval_dir: str | Path, benchmark: str) -> dict:
    """{"ids", "means" [Q], "samples" ([Q][k] or None when the result predates per-sample scores), "k", "path"}."""
    r = read_eval_result(eval_dir, benchmark)
    per_q = r.per_question
    samples = [q["samples"] for q in per_q] if per_q and all("samples" in q for q in per_q) else None
    return {"ids": [q["id"] for q in per_q], "means": np.array([q["mean"] for q in per_q], dtype=float),
            "samples": samples, "k": int(r.k), "path": str(result_path(eval_dir, benchmark))}


def _by_seed(dirs: list[str], seeds: list, ref_seeds: list, label: str) -> dict:
    """seed -> eval dir of a row, a row with one unseeded evaluation broadcast to the reference's seeds."""
    if len(dirs) != len(seeds):
        raise DataError(f"row {label!r}: {len(dirs)} evaluation directories for seeds {seeds}")
    if seeds == [None]:
        return {s: dirs[0] for s in ref_seeds}
    return dict(zip(seeds, dirs))


def _scores(by_seed: dict, columns: list[str], cache: dict) -> dict:
    out = {}
    for s, d in by_seed.items():
        out[s] = []
        for b in columns:
            key = (str(d), b)
            if key not in cache:
                cache[key] = load_questions(d, b)
            out[s].append(cache[key])
    return out


def _check_same_questions(arm: dict, ref: dict, label: str, reference: str) -> None:
    for s, records in arm.items():
        for a, r in zip(records, ref.get(s, [])):
            if a["ids"] != r["ids"]:
                raise PairingError(f"row {label!r} vs {reference!r}, seed {s}: {a['path']} and {r['path']} hold "
                                   f"different questions (ids or order differ): they cannot be paired; evaluate "
                                   "both with the same benchmark files, revision and limit")


def question_view(rows: dict[str, list[str]], seeds: dict[str, list], reference: dict[str, str],
                  benchmarks: list[str], average_over: list[str], bootstrap: int = 10000) -> dict:
    """row -> {"reference", "columns": {benchmark | "avg": paired_question_difference(...)}} for every row that
    has a reference (the reference rows themselves are left out: their difference is 0 by definition)."""
    cache: dict = {}
    out = {}
    columns = list(benchmarks) + (["avg"] if average_over else [])
    for label, ref_label in reference.items():
        ref_seeds = [s for s in seeds[ref_label] if s is not None]
        if not ref_seeds:
            raise DataError(f"reference row {ref_label!r} has no seeded run (a reference must be trained)")
        arm_dirs = _by_seed(rows[label], seeds[label], ref_seeds, label)
        ref_dirs = _by_seed(rows[ref_label], seeds[ref_label], ref_seeds, ref_label)
        cells = {}
        for col in columns:
            over = average_over if col == "avg" else [col]
            arm, ref = _scores(arm_dirs, over, cache), _scores(ref_dirs, over, cache)
            _check_same_questions(arm, ref, label, ref_label)
            try:
                cells[col] = paired_question_difference({s: [q["means"] for q in v] for s, v in arm.items()},
                                                        {s: [q["means"] for q in v] for s, v in ref.items()},
                                                        bootstrap=bootstrap)
            except PairingError as e:
                raise PairingError(f"row {label!r} vs {ref_label!r}, column {col}: {e}") from None
        out[label] = {"reference": ref_label, "shared_evaluation": seeds[label] == [None], "columns": cells,
                      "eval_dirs": {str(s): str(d) for s, d in arm_dirs.items()},
                      "reference_dirs": {str(s): str(d) for s, d in ref_dirs.items()}}
    return out


def curve_view(runs: dict[str, dict[str, str]], reference: dict[str, str], keys: list[str], block: int,
               bootstrap: int = 10000) -> dict:
    """row -> key -> {"auc": paired_seed_difference of the curve's mean level, "blocks": [{"start", "end", ...}],
    "steps": [first, last]} for every trained row with a trained reference; a key a run did not log is reported
    in "missing" (never silently dropped)."""
    from pgpo.records.stages import read_metrics

    metrics = {d: read_metrics(d) for row in runs.values() for d in row.values()}
    out = {}
    for label, ref_label in reference.items():
        if label not in runs or ref_label not in runs:
            continue  # an untrained row (the start model) has no training curve
        arm, ref = runs[label], runs[ref_label]
        row = {}
        for key in keys:
            curves = {}
            missing = []
            for side, by_seed in (("arm", arm), ("ref", ref)):
                for s, d in by_seed.items():
                    pts = [(r["step"], float(r[key])) for r in metrics[d] if _finite(r.get(key))]
                    if not pts:
                        missing.append(d)
                    curves[(side, s)] = pts
            if missing:
                row[key] = {"missing": sorted(set(missing))}
                continue
            first = max(p[0][0] for p in curves.values())
            last = min(p[-1][0] for p in curves.values())
            if first > last:
                row[key] = {"missing": [], "error": f"the runs' logged steps do not overlap ({first} > {last})"}
                continue
            level = {side: {} for side in ("arm", "ref")}
            blocks: dict[float, dict] = {}
            for (side, s), pts in curves.items():
                steps, values = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
                keep = (steps >= first) & (steps <= last)
                level[side][s] = curve_auc(steps, values, first=first, last=last)
                for start, m in zip(*block_means(steps[keep], values[keep], block)):
                    blocks.setdefault(float(start), {"arm": {}, "ref": {}})[side][s] = float(m)
            row[key] = {"steps": [int(first), int(last)],
                        "auc": paired_seed_difference(level["arm"], level["ref"], bootstrap=bootstrap),
                        "blocks": [{"start": int(start), "end": int(min(start + block - 1, last)),
                                    **paired_seed_difference(v["arm"], v["ref"], bootstrap=bootstrap)}
                                   for start, v in sorted(blocks.items())]}
        out[label] = row
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


# ---------------------------------------------------------------- writing
def _cell(s: dict, scale: float = 100.0) -> str:
    if s.get("ci95") is None:
        return f"{s['mean'] * scale:+.2f} [no interval]"
    lo, hi = s["ci95"]
    return f"{s['mean'] * scale:+.2f} [{lo * scale:+.2f}, {hi * scale:+.2f}]"


def _p(s: dict) -> str:
    return f"{s['p_value']:.3g}" if s.get("n_seeds", 0) > 1 else "n/a (1 seed)"


def detection_line(view: dict) -> str:
    """The sentence stating what the design can detect (Avg column, or the first column)."""
    mdes = [r["columns"].get("avg", next(iter(r["columns"].values()))) for r in view.values()]
    if not mdes:
        return ""
    m = [c["mde80"] * 100 for c in mdes]
    n_seeds = mdes[0]["n_seeds"]
    rng = f"{min(m):.2f}" if max(m) - min(m) < 0.005 else f"{min(m):.2f}-{max(m):.2f}"
    flip = (f"the sign-flip test over {n_seeds} seeds cannot give p below {mdes[0]['sign_flip_min_p']:.3g}"
            + (" (fewer than 6 seeds never reach 0.05)" if n_seeds < 6 else "")) if n_seeds > 1 else \
        "1 seed: no test over seeds, and seed-to-seed variation is not in the intervals"
    return (f"Smallest difference this design detects (80% power, 5% two-sided, interval excluding 0): {rng} points "
            f"on the Avg ({mdes[0]['n_questions']} questions x {n_seeds} seed(s)); {flip}.")


def markdown(view: dict, curves: dict, title: str, columns: list[str], names: dict[str, str],
             note: str = "") -> str:
    head = [names.get(c, c) for c in columns]
    lines = [f"# {title}: paired differences to the reference row", "",
             ("arm - reference in points (avg@k %), paired by question and seed: mean over seeds [95% interval, "
             "two-level bootstrap: seeds, then questions drawn once for both arms]; p = exact sign-flip test over "
             "the per-seed differences of the last column."), ""]
    if note:
        lines += [note, ""]
    if view:
        lines += ["| row | reference | " + " | ".join(head) + " | p | mde80 |", "|---" * (len(columns) + 4) + "|"]
        for label, r in view.items():
            last = r["columns"][columns[-1]]
            shared = " (one evaluation, shared by every seed)" if r["shared_evaluation"] else ""
            lines.append(f"| {label}{shared} | {r['reference']} | "
                         + " | ".join(_cell(r["columns"][c]) for c in columns)
                         + f" | {_p(last)} | {last['mde80'] * 100:.2f} |")
        lines += ["", detection_line(view)]
    for key in sorted({k for row in curves.values() for k in row}):
        lines += ["", (f"## Training curve `{key}`: mean level (area under the curve / steps) and block means, "
                      "arm - reference, seeds as blocks"), ""]
        for label, row in curves.items():
            c = row.get(key)
            if c is None:
                continue
            if "auc" not in c:
                lines.append(f"- {label}: not compared: " + (c.get("error") or f"not logged in {c['missing']}"))
                continue
            blocks = "; ".join(f"steps {b['start']}-{b['end']}: {_cell(b, 1.0)}" for b in c["blocks"])
            lines.append(f"- {label} - {view.get(label, {}).get('reference', '')}: steps {c['steps'][0]}-"
                         f"{c['steps'][1]}: {_cell(c['auc'], 1.0)}, p {_p(c['auc'])}"
                         + (f", mde80 {c['auc']['mde80']:.4f}" if c["auc"]["mde80"] is not None else "")
                         + f" | blocks: {blocks}")
    return "\n".join(lines) + "\n"


def records(view: dict, curves: dict, names: dict[str, str]) -> list[dict]:
    """One flat record per (row, column) and per (row, curve statistic), for the CSV and MLflow's log_table."""
    out = []

    def rec(label, ref, column, s, extra=None):
        lo, hi = s["ci95"] if s.get("ci95") is not None else (None, None)
        out.append({"row": label, "reference": ref, "column": column, "mean": s["mean"], "ci95_low": lo,
                    "ci95_high": hi, "p_value": s["p_value"], "n_seeds": s["n_seeds"],
                    "n_questions": s.get("n_questions", ""), "se": s["se"], "mde80": s["mde80"],
                    "per_seed": ";".join(f"{v:.6f}" for v in s["per_seed"]), "notes": " ".join(s["notes"]),
                    **(extra or {})})

    for label, r in view.items():
        for col, s in r["columns"].items():
            rec(label, r["reference"], names.get(col, col), s)
    for label, row in curves.items():
        ref = view.get(label, {}).get("reference", "")
        for key, c in row.items():
            if "auc" in c:
                rec(label, ref, f"{key}: mean level, steps {c['steps'][0]}-{c['steps'][1]}", c["auc"])
                for b in c["blocks"]:
                    rec(label, ref, f"{key}: block mean, steps {b['start']}-{b['end']}", b)
    return out


def write_diff(view: dict, curves: dict, prefix: str | Path, title: str, columns: list[str],
               names: dict[str, str], meta: dict, note: str = "") -> list[Path]:
    """<prefix>.diff.md, .diff.csv, .diff.json; returns their paths."""
    prefix = Path(prefix)
    md = prefix.parent / f"{prefix.name}.diff.md"
    write_atomic(md, markdown(view, curves, title, columns, names, note))
    recs = records(view, curves, names)
    csv_path = prefix.parent / f"{prefix.name}.diff.csv"
    fields = ["row", "reference", "column", "mean", "ci95_low", "ci95_high", "p_value", "n_seeds", "n_questions",
              "se", "mde80", "per_seed", "notes"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(recs)
    js = prefix.parent / f"{prefix.name}.diff.json"
    write_atomic(js, json.dumps({**meta, "note": note, "rows": view, "curves": curves}, indent=1))
    return [md, csv_path, js]


def html_fragment(view: dict, columns: list[str], names: dict[str, str], note: str = "") -> str:
    """The difference view as an HTML section for the table's page."""
    parts = [("<h3>Paired differences to the reference row</h3><p>arm - reference in points, paired by question and "
             "seed [95% interval]; p: exact sign-flip test over seeds (last column).</p>")]
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    if view:
        td = "<td style='padding:2px 8px;text-align:right'>"
        head = "".join(f"<th>{html.escape(names.get(c, c))}</th>" for c in columns)
        body = "".join(
            f"<tr><th style='text-align:left;padding:2px 8px'>{html.escape(label)}</th><td>"
            f"{html.escape(r['reference'])}</td>" + "".join(f"{td}{_cell(r['columns'][c])}</td>" for c in columns)
            + f"{td}{_p(r['columns'][columns[-1]])}</td></tr>" for label, r in view.items())
        parts.append(f"<table border=1 style='border-collapse:collapse;font-family:sans-serif'><tr><th>row</th>"
                     f"<th>reference</th>{head}<th>p</th></tr>{body}</table><p>{html.escape(detection_line(view))}</p>")
    return "".join(parts)


def build_and_write(spec: dict, names: dict[str, str]) -> tuple[list[Path], list[dict], str]:
    """The whole difference view of a table spec (pgpo.workflow.plan.TableSpec as a dict): (files, records, html)."""
    paired = spec.get("paired") or {}
    reference = dict(spec.get("reference") or {})
    columns = list(spec["benchmarks"]) + (["avg"] if spec["average_over"] else [])
    note = spec.get("reference_note", "")
    bootstrap = int(paired.get("bootstrap", 10000))
    view = question_view(spec["rows"], {k: list(v) for k, v in spec["seeds"].items()}, reference,
                         spec["benchmarks"], spec["average_over"], bootstrap)
    curves = curve_view(spec.get("curve_runs") or {}, reference, list(paired.get("curves", [])),
                        int(paired.get("curve_block", 10)), bootstrap) if reference else {}
    meta = {"target": spec["target"], "benchmarks": spec["benchmarks"], "average_over": spec["average_over"],
            "bootstrap": bootstrap, "detect_factor": detect_factor()}
    files = write_diff(view, curves, spec["out"], spec["title"], columns, names, meta, note)
    return files, records(view, curves, names), html_fragment(view, columns, names, note)
