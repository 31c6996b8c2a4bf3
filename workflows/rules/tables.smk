# Tracking and tables. Results JSONs are the source of truth; `track_<target>` mirrors them into MLflow (one local
# writer), `table_<target>` writes <root>/<target>.md/.csv/.html, the paired differences to the reference row
# (<target>.diff.md/.csv/.json) and its figures, and attaches them to the target's parent run. Tables and figures
# are report() outputs: `snakemake --report report.html` shows them in one page.

REPORT_CATEGORY = {"table1": "Table 1", "table7": "Table 7", "ablation_thresholds": "Threshold ablation"}


FIGURE_REPORT = {"bars": ("bars.rst", "results"), "heatmap": ("heatmap.rst", "results"),
                 "curves": ("curves.rst", "training"), "warmstart": ("warmstart.rst", "training")}


def table_outputs(target):
    """Named outputs of table_<target>: the table files, then every figure, the viewable ones marked for the report."""
    out = {"md": LAYOUT.target(target, "md"), "csv": LAYOUT.target(target, "csv"),
           "html": report(LAYOUT.target(target, "html"), caption="../report/table.rst", category=REPORT_CATEGORY[target],
                          subcategory="results"),
           **plan.diff_files(config, target)}  # the difference-to-reference view (its HTML is in the table's page)
    for kind, path in plan.figure_files(config, target).items():
        caption, sub = FIGURE_REPORT[kind]
        category = "Warm start" if kind == "warmstart" else REPORT_CATEGORY[target]
        out[kind] = report(path, caption=f"../report/{caption}", category=category, subcategory=sub)
    return out


for _target in ("table1", "table7", "ablation_thresholds"):

    rule:
        name:
            f"track_{_target}"
        input:
            target_inputs(_target),
        output:
            LAYOUT.tracking(_target),
        log:
            LAYOUT.log(f"track_{_target}"),
        benchmark:
            LAYOUT.benchmark("track", _target)
        conda:
            "../../environment.yml"
        resources:
            mlflow=1,
        params:
            pgpo=PGPO,
            spec=track_spec(_target),
        shell:
            "{params.pgpo} track --spec {params.spec:q} --out {output} > {log} 2>&1"

    rule:
        name:
            f"table_{_target}"
        input:
            target_inputs(_target),
            LAYOUT.tracking(_target),
            warm_start_marker() if "warmstart" in plan.figure_files(config, _target) else [],
        output:
            **table_outputs(_target),
        log:
            LAYOUT.log(f"table_{_target}"),
        benchmark:
            LAYOUT.benchmark("table", _target)
        conda:
            "../../environment.yml"
        resources:
            mlflow=1,
        params:
            pgpo=PGPO,
            spec=table_spec(_target),
        shell:
            "{params.pgpo} table --spec {params.spec:q} > {log} 2>&1"
