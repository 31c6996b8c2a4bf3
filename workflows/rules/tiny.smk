# Foundation stages of the tiny profile: model, data, warm start, one RL run per method.
ROOT = config["root"]


rule build_tiny:
    output:
        f"{ROOT}/model/base/config.json",
    log:
        f"{ROOT}/logs/build_tiny.log",
    params:
        out=f"{ROOT}/model/base",
        seed=config["seed"],
    shell:
        "pgpo build-tiny --out {params.out} --seed {params.seed} > {log} 2>&1"


rule make_data:
    output:
        f"{ROOT}/data/MANIFEST.json",
    log:
        f"{ROOT}/logs/make_data.log",
    params:
        out=f"{ROOT}/data",
        seed=config["seed"],
    shell:
        "pgpo make-data --out {params.out} --seed {params.seed} > {log} 2>&1"


rule warm_start:
    input:
        model=rules.build_tiny.output,
        data=rules.make_data.output,
    output:
        f"{ROOT}/model/warmstart/warmstart.json",
    log:
        f"{ROOT}/logs/warm_start.log",
    threads: 2
    params:
        out=f"{ROOT}/model/warmstart",
        steps=config["warmstart"]["steps"],
        lr=config["warmstart"]["lr"],
        bs=config["warmstart"]["batch_size"],
        noise=config["warmstart"]["label_noise"],
    shell:
        "pgpo warm-start --model {ROOT}/model/base --data {ROOT}/data --out {params.out} "
        "--set steps={params.steps} --set lr={params.lr} --set batch_size={params.bs} "
        "--set label_noise={params.noise} > {log} 2>&1"


rule train:
    input:
        rules.warm_start.output,
    output:
        f"{ROOT}/runs/{{method}}-s{{seed}}/run.json",
    log:
        f"{ROOT}/logs/train_{{method}}_s{{seed}}.log",
    threads: 1
    params:
        out=f"{ROOT}/runs/{{method}}-s{{seed}}",
        config=config["train_config"],
    shell:
        "pgpo train --method {wildcards.method} --config {params.config} --seed {wildcards.seed} "
        "--set threads={threads} --out {params.out} > {log} 2>&1"


rule tiny_foundation:
    input:
        expand(f"{ROOT}/runs/{{method}}-s{{seed}}/run.json", method=config["methods"], seed=[config["seed"]]),
