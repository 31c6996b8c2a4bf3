# Evaluation through lmms-eval: one job per (checkpoint, shard); a shard is a benchmark or a group of them.
# Eval directories mirror the runs: eval/<size>/base, eval/<size>/<method>-s<seed>, eval/<size>/ablation/...


rule evaluate:
    input:
        checkpoint_marker,
    output:
        f"{ROOT}/eval/{{size}}/{{run}}/shard-{{shard}}.json",
    log:
        f"{ROOT}/logs/eval/{{size}}/{{run}}/{{shard}}.log",
    benchmark:
        f"{ROOT}/benchmarks/evaluate/{{size}}/{{run}}/{{shard}}.tsv"
    wildcard_constraints:
        size="[^/]+",
        shard="[^/]+",
        run=".+",
    conda:
        "../../environment.yml"
    threads: lookup(dpath="resources/eval/threads", within=config)
    resources:
        **resources_of("eval"),
    params:
        launch=bind(config["launch"]["eval"]),
        checkpoint=checkpoint_dir,
        revision=checkpoint_revision,
        eval_config=repo_path(config["eval_config"]),
        data=f"--data {ROOT}/data" if config["build_tiny"] else "",
        sets=sets(config["eval_set"]),
        out=lambda wc: f"{ROOT}/eval/{wc.size}/{wc.run}",
    shell:
        "{params.launch} --checkpoint {params.checkpoint} {params.revision} --config {params.eval_config} {params.data} "
        "--benchmarks {wildcards.shard} --out {params.out} --overwrite --summary {output} "
        "--set backend.threads={threads} {params.sets} > {log} 2>&1"
