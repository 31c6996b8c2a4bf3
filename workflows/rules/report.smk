# Token-level visual dependency of one trained checkpoint on held-out samples (heatmap + sparsity statistics).
# Profiles without a dependency_report block (paper) have no such rule.


if "dependency_report" in config:

    rule dependency_report:
        input:
            f"{LAYOUT.trained_run(config['dependency_report']['size'], config['dependency_report']['run'])}/run.json",
        output:
            html=report(LAYOUT.report("dependency.html"), caption="../report/dependency_html.rst",
                        category="Visual dependency"),
            png=report(LAYOUT.report("dependency.png"), caption="../report/dependency_png.rst",
                       category="Visual dependency"),
            json=LAYOUT.report("dependency.json"),
        log:
            LAYOUT.log("dependency_report"),
        benchmark:
            LAYOUT.benchmark("report", "dependency")
        conda:
            "../../environment.yml"
        params:
            pgpo=PGPO,
            checkpoint=lambda wc, input: str(Path(input[0]).parent / "final"),
            per_task=lookup(dpath="dependency_report/items_per_task", within=config),
            k=lookup(dpath="dependency_report/k", within=config),
            data=LAYOUT.data,
            out=lambda wc, output: str(Path(output.json).with_suffix("")),
        shell:
            "{params.pgpo} dependency-report --checkpoint {params.checkpoint} --data {params.data} --items-per-task {params.per_task} "
            "--k {params.k} --out {params.out} > {log} 2>&1"
