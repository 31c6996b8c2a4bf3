# Evaluation through lmms-eval: one job per (checkpoint, shard); a shard is a benchmark or a group of them.
# Eval directories mirror the runs: eval/<size>/base, eval/<size>/<method>-s<seed>, eval/<size>/ablation/...


rule evaluate:
    input:
        checkpoint_marker,
    output:
        LAYOUT.eval_shard("{size}", "{run}", "{shard}"),
    log:
        LAYOUT.eval_log("{size}", "{run}", "{shard}"),
    benchmark:
        LAYOUT.benchmark("evaluate", "{size}", "{run}", "{shard}")
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
        launch=job_command(config["launch"]["eval"], REPO),
        checkpoint=checkpoint_dir,
        revision=checkpoint_revision,
        eval_config=repo_path(config["eval_config"]),
        data=f"--data {LAYOUT.data}" if config["build_tiny"] else "",
        sets=sets(config["eval_set"]),
        out=lambda wc: LAYOUT.eval(wc.size, wc.run),
    shell:
        "{params.launch} --checkpoint {params.checkpoint} {params.revision} --config {params.eval_config} {params.data} "
        "--benchmarks {wildcards.shard} --out {params.out} --resume --summary {output} "
        "--set backend.threads={threads} {params.sets} > {log} 2>&1"
