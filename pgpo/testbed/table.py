"""The credit_testbed table: per variant, every arm's paired difference to the reference arm (pgpo.stats.paired), every
seed's training curve as a figure, the gates of each warm start, all mirrored into MLflow.

Metrics per run (pgpo.testbed.records): forced-answer accuracy per held-out question (paired by question within
seed), area under the training-accuracy curve, steps to +gain and the final filler entropy (paired by seed). A run
that never reached +gain is censored at its last step + block (counted in the table: `censored`)."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np

from pgpo.util.atomic import write_atomic
from pgpo.util.jsonfile import read_json

SEED_METRICS = (("auc", "area under training accuracy"), ("steps_to_gain", "steps to +gain"),
                ("filler_entropy", "final filler entropy (nats)"))


def load_records(paths: list[str]) -> dict[str, dict[str, dict[int, dict]]]:
    """variant -> arm -> seed -> record."""
    out: dict = {}
    for p in paths:
        r = read_json(p, "the testbed's record rule", what="testbed record")
        out.setdefault(r["variant"], {}).setdefault(r["arm"], {})[int(r["seed"])] = r
    return out


def _forced(records: dict[int, dict], skills: list[str]) -> dict[int, list[np.ndarray]]:
    return {s: [np.asarray(r["forced"][k]["p"], dtype=float) for k in skills] for s, r in records.items()}


def _check_same_questions(arm: dict[int, dict], ref: dict[int, dict], skills: list[str], where: str) -> None:
    for seed in arm:
        for k in skills:
            if seed in ref and arm[seed]["forced"][k]["ids"] != ref[seed]["forced"][k]["ids"]:
                raise ValueError(f"{where}: seed {seed}, skill {k}: the arm and the reference were measured on "
                                 "different held-out questions (unpaired)")


def _censored(r: dict) -> tuple[float, bool]:
    if r["steps_to_gain"] is None:
        return float(r["global_steps"] + r["block"]), True
    return float(r["steps_to_gain"]), False


def compare(variant: str, arms: dict[str, dict[int, dict]], reference: str, bootstrap: int) -> list[dict]:
    """Rows of paired differences arm - reference for every arm of a variant but the reference."""
    from pgpo.stats.paired import paired_question_difference, paired_seed_difference

    if reference not in arms:
        raise ValueError(f"variant {variant}: no record of the reference arm {reference!r} (arms: {sorted(arms)})")
    ref = arms[reference]
    skills = sorted(next(iter(ref.values()))["forced"])
    rows = []
    for arm, recs in arms.items():
        if arm == reference:
            continue
        _check_same_questions(recs, ref, skills, f"variant {variant}, arm {arm}")
        res = paired_question_difference(_forced(recs, skills), _forced(ref, skills), bootstrap=bootstrap, seed=0)
        rows.append(_row(variant, arm, "forced_answer", "forced-answer accuracy (held-out)", res,
                         np.mean([r["forced_mean"] for r in recs.values()]),
                         np.mean([r["forced_mean"] for r in ref.values()])))
        for key, label in SEED_METRICS:
            if key == "steps_to_gain":
                a, b = ({s: _censored(r)[0] for s, r in d.items()} for d in (recs, ref))
                cens = sum(_censored(r)[1] for d in (recs, ref) for r in d.values())
            else:
                a, b = ({s: float(r[key]) for s, r in d.items()} for d in (recs, ref))
                cens = 0
            res = paired_seed_difference(a, b, bootstrap=bootstrap, seed=0)
            rows.append({**_row(variant, arm, key, label, res, np.mean(list(a.values())),
                                np.mean(list(b.values()))), "censored": cens})
    return rows


def _row(variant, arm, metric, label, res, arm_mean, ref_mean) -> dict:
    return {"variant": variant, "arm": arm, "metric": metric, "label": label, "arm_mean": float(arm_mean),
            "ref_mean": float(ref_mean), "diff": float(res["mean"]), "ci95_low": float(res["ci95"][0]),
            "ci95_high": float(res["ci95"][1]), "p_value": float(res["p_value"]), "n_seeds": int(res["n_seeds"]),
            "n_questions": int(res.get("n_questions") or 0), "mde80": float(res["mde80"]), "censored": 0}


def _gate_lines(reports: dict[str, str]) -> list[str]:
    lines = []
    for variant, path in reports.items():
        if not Path(path).exists():
            lines.append(f"- {variant}: no gate report ({path})")
            continue
        rep = read_json(path, "the testbed's gates rule", what="gate report")
        gates = ", ".join(f"{g['name']} {g['value']:.3f} {'ok' if g['passed'] else 'FAILED'}" for g in rep["gates"])
        lines.append(f"- {variant}: {'passed' if rep['passed'] else 'FAILED'}: {gates}")
    return lines


def markdown(rows: list[dict], reference: str, profile: str, gate_lines: list[str]) -> str:
    out = [f"# Credit-assignment testbed ({profile} profile)", "",
           f"Paired differences arm - {reference} (same seeds; forced answer also same questions): mean [95% "
           "interval], exact sign-flip p over seeds, smallest difference detectable with 80% power at 5% (mde80).", ""]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        out += [f"## {variant}", "", f"| arm | metric | arm | {reference} | difference [95% CI] | p | seeds | "
                "mde80 |", "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["variant"] == variant):
            cens = f" ({r['censored']} censored)" if r["censored"] else ""
            out.append(f"| {r['arm']} | {r['label']}{cens} | {r['arm_mean']:.4g} | {r['ref_mean']:.4g} | "
                       f"{r['diff']:+.4g} [{r['ci95_low']:+.4g}, {r['ci95_high']:+.4g}] | {r['p_value']:.3g} | "
                       f"{r['n_seeds']} | {r['mde80']:.3g} |")
        out.append("")
    return "\n".join(out + ["Gates of the warm starts:", *gate_lines, ""])


def write_html(rows: list[dict], path: Path, title: str) -> None:
    head = ["variant", "arm", "label", "arm_mean", "ref_mean", "diff", "ci95_low", "ci95_high", "p_value", "n_seeds",
            "mde80", "censored"]
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(f'{r[k]:.4g}' if isinstance(r[k], float) else str(r[k]))}"
                                     "</td>" for k in head) + "</tr>" for r in rows)
    write_atomic(path, f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
                       f"<h2>{html.escape(title)}</h2><table border=1 cellpadding=3><tr>"
                       + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{cells}</table></body></html>")


def plot_seed_curves(records: dict, curves: list[str], path: Path) -> None:
    """One row of panels per variant, one panel per curve, one line per (arm, seed), one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(records)
    fig, axes = plt.subplots(len(variants), len(curves), figsize=(4.2 * len(curves), 3.0 * len(variants)),
                             squeeze=False)
    arms = sorted({a for v in records.values() for a in v})
    colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(arms)}
    for i, variant in enumerate(variants):
        for j, curve in enumerate(curves):
            ax = axes[i][j]
            for arm, seeds in records[variant].items():
                for n, (seed, r) in enumerate(sorted(seeds.items())):
                    c = r["curves"][curve]
                    ax.plot(c["steps"], c["values"], color=colours[arm], alpha=0.6, lw=1,
                            label=arm if n == 0 else None)
            first = next(iter(next(iter(records[variant].values())).values()))
            ax.set_title(f"{variant}: {first['curves'][curve]['metric']}", fontsize=8)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_testbed_table(spec: dict) -> list[Path]:
    """Table (md, csv, html), the seeds' curves (png) and the MLflow mirror (tracking json) of a finished target."""
    records = load_records(spec["records"])
    rows = [row for variant, arms in records.items()
            for row in compare(variant, arms, spec["reference"], spec["bootstrap"])]
    out = Path(spec["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv_path, html_path, png = (Path(f"{out}{s}") for s in (".md", ".csv", ".html", ".curves.png"))
    write_atomic(md, markdown(rows, spec["reference"], spec["profile"], _gate_lines(spec["gate_reports"])))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_html(rows, html_path, f"Credit-assignment testbed ({spec['profile']} profile)")
    plot_seed_curves(records, spec["curves"], png)
    from pgpo.testbed.tracking import mirror

    tracking = mirror(spec, records, rows, [md, csv_path, html_path, png])
    write_atomic(Path(f"{out}.tracking.json"), json.dumps(tracking, indent=2))
    return [md, csv_path, html_path, png, Path(f"{out}.tracking.json")]
