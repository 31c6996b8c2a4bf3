# Tracking and tables. Results JSONs are the source of truth; `track_<target>` mirrors them into MLflow (one local
# writer), `table_<target>` writes <root>/<target>.md/.csv/.png and attaches them to the target's parent run.


def run_label(size, name):
    return name if len(SIZES) == 1 else f"{size} {name}"


def table_rows(target):
    """Row label -> eval directories (one per seed) of a target."""
    rows = {}
    if target in ("table1", "table7"):
        keep = methods() if target == "table1" else config.get("table7", [])
        for size in SIZES:
            rows[run_label(size, "base")] = [f"{ROOT}/eval/{size}/base"]
            for m in keep:
                rows[run_label(size, m)] = [f"{ROOT}/eval/{size}/{m}-s{s}" for s in SEEDS]
    else:
        for size in SIZES:
            for pattern in ABLATION.instance_patterns:
                variant = pattern.split("/")[0].split("~", 1)[1]
                rows[run_label(size, variant)] = [f"{ROOT}/eval/{size}/ablation/{pattern}/s{s}"
                                                  for s in config["ablation"]["seeds"]]
    return rows


def trainings(target):
    """Name -> training run directory, with labels (size, method, seed, variant) for MLflow params."""
    out, labels = {}, {}
    if target in ("table1", "table7"):
        keep = methods() if target == "table1" else config.get("table7", [])
        for size, m, s in train_runs():
            if m in keep:
                name = f"{size}/{m}-s{s}"
                out[name] = f"{ROOT}/runs/{name}"
                labels[name] = {"size": size, "method": m, "seed": s}
    else:
        for size, pattern, s in ablation_runs():
            name = f"{size}/{pattern}/s{s}"
            out[name] = f"{ROOT}/ablation/{name}"
            labels[name] = {"size": size, "method": config["ablation"]["method"], "seed": s,
                            "variant": pattern.split("/")[0].split("~", 1)[1]}
    return out, labels


def target_inputs(target):
    runs, _ = trainings(target)
    dirs = [d for ds in table_rows(target).values() for d in ds]
    shards = [f"{d}/shard-{s}.json" for d in dirs for s in config["eval_shards"]]
    return [f"{d}/run.json" for d in runs.values()] + shards


def track_spec(target):
    runs, labels = trainings(target)
    evals = {str(Path(d).relative_to(ROOT)): d for ds in table_rows(target).values() for d in ds}
    return json.dumps({"root": ROOT, "target": target, "benchmarks": benchmarks(), "trainings": runs,
                       "evaluations": evals, "labels": labels})


def table_spec(target, title):
    return json.dumps({"root": ROOT, "target": target, "title": title, "rows": table_rows(target),
                       "benchmarks": benchmarks(), "average_over": config["average_over"],
                       "tracking": f"{ROOT}/tracking/{target}.json", "out": f"{ROOT}/{target}"})


TITLES = {"table1": f"Table 1 ({PROFILE} profile)", "table7": f"Table 7: PGPO on GRPO ({PROFILE} profile)",
          "ablation_thresholds": f"Threshold and modulation ablation ({PROFILE} profile)"}


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
            spec=track_spec(_target),
        shell:
            "pgpo track --spec {params.spec:q} --out {output} > {log} 2>&1"

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
            spec=table_spec(_target, TITLES[_target]),
        shell:
            "pgpo table --spec {params.spec:q} > {log} 2>&1"
