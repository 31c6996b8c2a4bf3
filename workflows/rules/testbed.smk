# The credit-assignment testbed (issue 21): `snakemake --cores all credit_testbed --configfile
# workflows/config/testbed.yaml`. data -> per variant: warm start -> go/no-go gates -> RL runs (arms x seeds) ->
# records -> one paired table vs the reference arm, every seed's curve, MLflow. What runs is planned in
# pgpo/testbed/plan.py (pure functions of the config's `testbed` section); a failing gate stops the target.
# Its helpers and constants: testbed_common.smk.

rule testbed_data:
    input:
        rules.build_tiny.output,
    output:
        f"{TESTBED}/data/MANIFEST.json",
    log:
        LAYOUT.log("testbed", "data"),
    benchmark:
        LAYOUT.benchmark("testbed", "data")
    conda:
        "../../environment.yml"
    params:
        pgpo=PGPO,
        model=lambda wc, input: str(Path(input[0]).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        spec=lambda wc: testbed_plan.data_spec(config),
    shell:
        "{params.pgpo} testbed data --model {params.model} --out {params.out} --spec {params.spec:q} > {log} 2>&1"


rule testbed_warm_start:
    input:
        model=rules.build_tiny.output,
        data=rules.testbed_data.output,
    output:
        f"{TESTBED}/{{variant}}/warmstart/warmstart.json",
    log:
        LAYOUT.log("testbed", "{variant}", "warm_start"),
    benchmark:
        LAYOUT.benchmark("testbed", "{variant}-warm_start")
    wildcard_constraints:
        variant="|".join(TESTBED_VARIANTS),
    conda:
        "../../environment.yml"
    threads: 2
    params:
        pgpo=PGPO,
        model=lambda wc, input: str(Path(input.model[0]).parent),
        data=lambda wc, input: str(Path(input.data[0]).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        sets=lambda wc: sets(config["testbed"].get("warmstart", {})),
    shell:
        "{params.pgpo} testbed warm-start --model {params.model} --data {params.data} --variant {wildcards.variant} "
        "--out {params.out} {params.sets} > {log} 2>&1"


# A failing gate exits 3 with the measured values (in the log and gate_report.json) and stops the target.
rule testbed_gates:
    input:
        warm=rules.testbed_warm_start.output,
        data=rules.testbed_data.output,
    output:
        f"{TESTBED}/{{variant}}/gates.json",
    log:
        LAYOUT.log("testbed", "{variant}", "gates"),
    benchmark:
        LAYOUT.benchmark("testbed", "{variant}-gates")
    wildcard_constraints:
        variant="|".join(TESTBED_VARIANTS),
    conda:
        "../../environment.yml"
    threads: 2
    params:
        pgpo=PGPO,
        checkpoint=lambda wc, input: str(Path(input.warm[0]).parent),
        data=lambda wc, input: str(Path(input.data[0]).parent),
        spec=lambda wc: testbed_plan.gate_spec(config, wc.variant),
        report=f"{TESTBED}/{{variant}}/gate_report.json",
    shell:
        "{params.pgpo} testbed gates --checkpoint {params.checkpoint} --data {params.data} "
        "--variant {wildcards.variant} --spec {params.spec:q} --report {params.report} --out {output} > {log} 2>&1"


rule testbed_train:
    input:
        gates=f"{TESTBED}/{{variant}}/gates.json",
        data=rules.testbed_data.output,
    output:
        f"{TESTBED}/{{variant}}/runs/{{arm}}-s{{seed}}/run.json",
    log:
        LAYOUT.log("testbed", "{variant}", "train", "{arm}-s{seed}"),
    benchmark:
        LAYOUT.benchmark("testbed", "train", "{variant}-{arm}-s{seed}")
    wildcard_constraints:
        variant="|".join(TESTBED_VARIANTS),
        arm="|".join(TESTBED_ARMS),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: lookup(dpath="resources/train/threads", within=config)
    # trainings before records and diagnostics: otherwise Snakemake starts records as trainings finish and the
    # last training runs alone at the end (the core's first timed run: 98 min, ~91 when packed)
    priority: 10
    resources:
        **resources_of("train"),
    params:
        launch=job_command(config["launch"]["train"], REPO),
        method=testbed_method,
        recipe=lambda wc: repo_path(config["testbed"]["train_config"]),
        model=f"{TESTBED}/{{variant}}/warmstart",
        train=lambda wc, input: str(Path(input.data[0]).parent / "train.jsonl"),
        length=lambda wc: testbed_plan.filler_length(config, wc.variant) + 16,
        sets=lambda wc: sets(config["testbed"].get("train_set", {})),
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.launch} --method {params.method} --config {params.recipe} --seed {wildcards.seed} "
        "--set model.path={params.model} --set data.train={params.train} "
        "--set rollout.max_completion_length={params.length} --set threads={threads} {params.sets} "
        "--out {params.out} > {log} 2>&1"


rule testbed_record:
    input:
        run=rules.testbed_train.output,
        data=rules.testbed_data.output,
    output:
        f"{TESTBED}/{{variant}}/records/{{arm}}-s{{seed}}.json",
    log:
        LAYOUT.log("testbed", "{variant}", "record", "{arm}-s{seed}"),
    benchmark:
        LAYOUT.benchmark("testbed", "record", "{variant}-{arm}-s{seed}")
    wildcard_constraints:
        variant="|".join(TESTBED_VARIANTS),
        arm="|".join(TESTBED_ARMS),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: 1
    params:
        pgpo=PGPO,
        run=lambda wc, input: str(Path(input.run[0]).parent),
        data=lambda wc, input: str(Path(input.data[0]).parent),
        spec=lambda wc: testbed_plan.record_spec(config, wc.variant, wc.arm, int(wc.seed)),
    shell:
        "{params.pgpo} testbed record --run {params.run} --data {params.data} --spec {params.spec:q} "
        "--out {output} > {log} 2>&1"


# The gradient diagnostic (issue 21, item 3) at a checkpoint of the core's variant: the warm start or a core run's
# last checkpoint (testbed.claims.diagnostic.at); the claims table reads it.
rule testbed_diagnostic:
    input:
        ready=lambda wc: testbed_plan.diagnostic_input(config, wc.at),
        data=rules.testbed_data.output,
    output:
        f"{TESTBED}/{{variant}}/diagnostic/{{at}}/gradient_diagnostic.json",
    log:
        LAYOUT.log("testbed", "{variant}", "diagnostic", "{at}"),
    benchmark:
        LAYOUT.benchmark("testbed", "diagnostic", "{variant}-{at}")
    wildcard_constraints:
        variant="|".join(TESTBED_VARIANTS),
        at="|".join(TESTBED_DIAGNOSTIC_POINTS),
    conda:
        "../../environment.yml"
    # one thread like a training: the same numbers as at 2 (checked bit for bit), 94 s vs 81-88 s, and it runs
    # beside the records instead of holding both cores
    threads: lookup(dpath="resources/train/threads", within=config)
    params:
        pgpo=PGPO,
        checkpoint=lambda wc: testbed_plan.diagnostic_checkpoint(config, wc.at),
        methods=testbed_diagnostic_methods,
        groups=lambda wc: config["testbed"]["claims"]["diagnostic"]["groups"],
        recipe=lambda wc: repo_path(config["testbed"]["train_config"]),
        train=lambda wc, input: str(Path(input.data[0]).parent / "train.jsonl"),
        length=lambda wc: testbed_plan.filler_length(config, wc.variant) + 16,
        sets=lambda wc: sets(config["testbed"].get("train_set", {})),
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.pgpo} gradient-diagnostic --checkpoint {params.checkpoint} --set threads={threads} "
        "--data {params.train} {params.methods} --groups {params.groups} --config {params.recipe} "
        "--set rollout.max_completion_length={params.length} {params.sets} --out {params.out} > {log} 2>&1"


if "testbed" in config:

    localrules:
        credit_testbed,
        testbed_table,

    rule testbed_table:
        input:
            records=[testbed_plan.record_path(config, v, a, s) for v, a, s in testbed_plan.runs(config)],
            gates=[f"{TESTBED}/{v}/gates.json" for v in TESTBED_VARIANTS],
        output:
            **testbed_table_outputs(),
        log:
            LAYOUT.log("testbed", "table"),
        benchmark:
            LAYOUT.benchmark("testbed", "table")
        conda:
            "../../environment.yml"
        resources:
            mlflow=1,
        params:
            pgpo=PGPO,
            spec=testbed_plan.table_spec(config),
        shell:
            "{params.pgpo} testbed table --spec {params.spec:q} > {log} 2>&1"

    # The confirmatory core alone (testbed.core: one variant, some arms): its own table, a subset of the records.
    if "core" in config["testbed"]:

        localrules:
            credit_testbed_core,
            testbed_core_table,

        rule testbed_core_table:
            input:
                records=[testbed_plan.record_path(config, v, a, s) for v, a, s in testbed_plan.core_runs(config)],
                gates=f"{TESTBED}/{config['testbed']['core']['variant']}/gates.json",
            output:
                **testbed_table_outputs("core"),
            log:
                LAYOUT.log("testbed", "core_table"),
            benchmark:
                LAYOUT.benchmark("testbed", "core_table")
            conda:
                "../../environment.yml"
            resources:
                mlflow=1,
            params:
                pgpo=PGPO,
                spec=testbed_plan.table_spec(config, "core"),
            shell:
                "{params.pgpo} testbed table --spec {params.spec:q} > {log} 2>&1"

        rule credit_testbed_core:
            input:
                rules.testbed_core_table.output,
                testbed_claims_files(),

    # The paper's claims measured on the core (testbed.claims): diagnostics + the core's records -> verdicts.
    if "claims" in config["testbed"]:

        localrules:
            testbed_claims,

        rule testbed_claims:
            input:
                records=testbed_plan.claims_records(config),
                diagnostics=[testbed_plan.diagnostic_path(config, at) for at in testbed_plan.diagnostic_points(config)],
            output:
                **testbed_claims_outputs(),
            log:
                LAYOUT.log("testbed", "claims"),
            benchmark:
                LAYOUT.benchmark("testbed", "claims")
            conda:
                "../../environment.yml"
            resources:
                mlflow=1,
            params:
                pgpo=PGPO,
                spec=testbed_plan.claims_spec(config),
            shell:
                "{params.pgpo} testbed claims --spec {params.spec:q} > {log} 2>&1"

    rule credit_testbed:
        input:
            rules.testbed_table.output,
            testbed_claims_files(),
