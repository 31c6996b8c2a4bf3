# PGPO reproduction workflow: data (tiny: generated; paper: prepared) -> train -> generate -> score -> track -> tables.
#   snakemake --cores all reproduce_table1                 tiny profile (2 CPU cores, about 27 minutes)
#   snakemake --cores all ablate_thresholds | table7 | dependency_report
#   snakemake reproduce_table1 --configfile workflows/config/quick.yaml    the same DAG in minutes (tests)
#   snakemake reproduce_table1 --profile profiles/slurm --configfile workflows/config/paper.yaml
import time
from pathlib import Path

_STARTED = time.time()


# The default profile only when no --configfile gave one: a --configfile replaces the default instead of being
# merged (sizes, shards differ). A profile that `extends:` another names its defaults itself; loading tiny.yaml
# under it as well would put tiny's values over its parent's (resolve_extends merges the child over the parent).
if "profile" not in config and "extends" not in config:

    configfile: "workflows/config/tiny.yaml"



# `snakemake --report report.html`: this page, then every table, figure and the dependency report (report() outputs)
report: "workflows/report/workflow.rst"


include: "workflows/rules/common.smk"
include: "workflows/rules/tiny.smk"
include: "workflows/rules/prepare.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/tables.smk"
include: "workflows/rules/report.smk"
include: "workflows/rules/testbed_common.smk"
include: "workflows/rules/testbed.smk"  # credit_testbed (issue 21): its own rules and target


localrules:
    reproduce_table1,
    ablate_thresholds,
    table7,
    track_table1,
    track_table7,
    track_ablation_thresholds,
    table_table1,
    table_table7,
    table_ablation_thresholds,


rule reproduce_table1:
    default_target: True
    input:
        rules.table_table1.output,


rule ablate_thresholds:
    input:
        rules.table_ablation_thresholds.output,


rule table7:
    input:
        rules.table_table7.output,


onsuccess:
    from pgpo.workflow.report import stage_times

    report = stage_times(f"{ROOT}/benchmarks", time.time() - _STARTED)
    print(report)
    Path(ROOT).mkdir(parents=True, exist_ok=True)
    Path(f"{ROOT}/stage_times.txt").write_text(report + "\n")  # scripts/update_reference.sh copies it
