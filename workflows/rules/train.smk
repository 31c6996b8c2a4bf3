# RL training: one job per (size, method, seed) for Table 1, one per (size, grid point, seed) for the ablation.
# `pgpo train` resumes from the last checkpoint in its directory, so a killed job continues where it stopped.


rule train:
    input:
        warm_start_marker(),
        prepared_data(),
    output:
        f"{LAYOUT.run('{size}', '{method}', '{seed}')}/run.json",
    log:
        LAYOUT.train_log("{size}", "{method}", "{seed}"),
    benchmark:
        LAYOUT.benchmark("train", "{size}-{method}-s{seed}")
    wildcard_constraints:
        size="[^/]+",
        method="[^/]+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: lookup(dpath="resources/train/threads", within=config)
    resources:
        **resources_of("train"),
    params:
        launch=job_command(config["launch"]["train"], REPO),
        recipe=lambda wc: repo_path(config["sizes"][wc.size]["train_config"]),
        model=lambda wc: start_model(wc.size),
        sets=sets({**train_data_set(), **config["train_set"]}),
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.launch} --method {wildcards.method} --config {params.recipe} --seed {wildcards.seed} "
        "--set model.path={params.model} --set threads={threads} {params.sets} --out {params.out} > {log} 2>&1"


rule train_ablation:
    input:
        warm_start_marker(),
        prepared_data(),
    output:
        f"{LAYOUT.ablation_run('{size}', '{variant}', '{seed}')}/run.json",
    log:
        LAYOUT.ablation_log("{size}", "{variant}", "{seed}"),
    benchmark:
        LAYOUT.benchmark("train_ablation", "{size}", "{variant}", "s{seed}")
    wildcard_constraints:
        size="[^/]+",
        variant="[^/]+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: lookup(dpath="resources/train/threads", within=config)
    resources:
        **resources_of("train"),
    params:
        launch=job_command(config["launch"]["train"], REPO),
        method=lookup(dpath="ablation/method", within=config, default=""),
        recipe=lambda wc: repo_path(config["sizes"][wc.size]["train_config"]),
        model=lambda wc: start_model(wc.size),
        sets=sets({**train_data_set(), **config["train_set"]}),
        method_sets=ablation_method_sets,
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.launch} --method {params.method} {params.method_sets} --config {params.recipe} "
        "--seed {wildcards.seed} --set model.path={params.model} --set threads={threads} {params.sets} "
        "--out {params.out} > {log} 2>&1"
