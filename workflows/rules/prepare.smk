# Paper profile: convert the downloaded training set (ViRL39K) into the project's split before any training.
# pgpo.workflow.prepare plans the job from config["prepare_data"]; profiles without that block have no such rule.
# The source folder is not an input (a dry run must work before the download); `pgpo prepare` names it if missing.


if PREPARE:

    rule prepare_train_data:
        output:
            PREPARE.outputs,
        log:
            LAYOUT.log("prepare_train_data"),
        benchmark:
            LAYOUT.benchmark("prepare_train_data")
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            **resources_of("prepare"),
        params:
            pgpo=PGPO,
            args=PREPARE.args,
        shell:
            "{params.pgpo} prepare {params.args} > {log} 2>&1"
