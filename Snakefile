# PGPO reproduction workflow. Entry point: snakemake --cores all reproduce_table1
# This file is the foundation's target list; the full DAG (training of every baselines/*.yaml method, lmms-eval
# evaluation, MLflow ingestion, tables) is built in workflows/rules/*.smk by the workflow issue.
configfile: "workflows/config/tiny_workflow.yaml"


include: "workflows/rules/tiny.smk"


rule all:
    input:
        rules.tiny_foundation.input,
