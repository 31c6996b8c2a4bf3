"""One target's table step (`pgpo table --spec`): the table from the scored evaluations of its rows, the paired
difference view, the figures the plan declared, and the files attached to the target's MLflow parent run."""

from __future__ import annotations

import dataclasses
import html
import sys
from pathlib import Path


def column_names(benchmarks: list[str]) -> dict[str, str]:
    """Benchmark -> its column title (the task YAML's paper_column; a tiny suite without its prefix)."""
    from pgpo.evaluation.benchmarks import all_benchmarks

    meta = all_benchmarks()
    return {b: meta[b].meta.get("paper_column", b.removeprefix("tiny_")) if b in meta else b for b in benchmarks}


def write_target(spec) -> tuple[Path, Path]:
    """Write everything a TableSpec (pgpo.workflow.plan) declares; returns the table's and the difference view's
    markdown files. Failed or ungradable items are counted in the table and warned about here, never dropped."""
    from pgpo.results.figures import write_figures
    from pgpo.results.paired_tables import build_and_write
    from pgpo.results.samples_view import samples_section
    from pgpo.results.tables import VIEWS, build_table, table_records, views_markdown, write_table, write_table_html
    from pgpo.tracking.ingest import log_table
    from pgpo.util.jsonfile import read_json

    tracking = read_json(spec.tracking, "`pgpo track`", what="tracking record") if spec.tracking else {}
    table = build_table({k: [Path(d) for d in v] for k, v in spec.rows.items()}, spec.benchmarks,
                        spec.average_over, tracking.get("runs"), row_runs=spec.row_runs)
    names = column_names(spec.benchmarks)
    # pass@k and maj@k from the same samples: extra sections of the same files, avg@k stays the table
    views = {v: t for v in VIEWS if (t := build_table({k: [Path(d) for d in ds] for k, ds in spec.rows.items()},
                                                       spec.benchmarks, spec.average_over, view=v)) is not None}
    figures = dict(spec.figures)  # kind -> file, planned with the rule's outputs (pgpo.workflow.plan.figure_files)
    files = write_table(table, spec.out, spec.title, names, bars=figures.pop("bars", None) is not None,
                        note=spec.note, extra_md=views_markdown(views, names))
    diff_files, diff_records, diff_html = build_and_write(dataclasses.asdict(spec), names)
    views_html = "".join(f"<pre>{html.escape(views_markdown({v: t}, names))}</pre>" for v, t in views.items())
    views_html += samples_section(spec.curve_runs)  # which tokens each method credited, in a logged rollout
    files.append(write_table_html(table, f"{spec.out}.html", spec.title, names, diff_html + views_html, spec.note))
    files += diff_files + write_figures(dataclasses.asdict(spec), table, figures)
    if tracking:
        log_table(spec.root, tracking["parent_run_id"], files, table_records(table),
                  {"diff.json": diff_records, **{f"table_{v}.json": table_records(t) for v, t in views.items()}})
    for p in table["provenance"]:
        if p["n_failed"]:
            print(f"pgpo table: warning: {p['n_failed']} failed or ungradable item(s) in {p['result']}",
                  file=sys.stderr)
    return Path(spec.out).with_suffix(".md"), diff_files[0]
