# Tracking and tables. Results JSONs are the source of truth; `track_<target>` mirrors them into MLflow (one local
# writer), `table_<target>` writes <root>/<target>.md/.csv/.png and attaches them to the target's parent run.


for _target in ("table1", "table7", "ablation_thresholds"):

    rule:
        name:
            f"track_{_target}"
        input:
            target_inputs(_target),
        output:
            f"{ROOT}/tracking/{_target}.json",
        log:
            f"{ROOT}/logs/track_{_target}.log",
        benchmark:
            f"{ROOT}/benchmarks/track/{_target}.tsv"
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
            f"{ROOT}/tracking/{_target}.json",
        output:
            multiext(f"{ROOT}/{_target}", ".md", ".csv", ".png"),
        log:
            f"{ROOT}/logs/table_{_target}.log",
        benchmark:
            f"{ROOT}/benchmarks/table/{_target}.tsv"
        conda:
            "../../environment.yml"
        resources:
            mlflow=1,
        params:
            pgpo=PGPO,
            spec=table_spec(_target),
        shell:
            "{params.pgpo} table --spec {params.spec:q} > {log} 2>&1"
