# The tiny profile builds its own model and data and warm-starts once; every method and seed starts from there.


rule build_tiny:
    output:
        f"{ROOT}/model/base/config.json",
    log:
        f"{ROOT}/logs/build_tiny.log",
    benchmark:
        f"{ROOT}/benchmarks/build_tiny.tsv"
    conda:
        "../../environment.yml"
    params:
        pgpo=PGPO,
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.pgpo} build-tiny --out {params.out} --seed 0 > {log} 2>&1"


rule make_data:
    output:
        f"{ROOT}/data/MANIFEST.json",
    log:
        f"{ROOT}/logs/make_data.log",
    benchmark:
        f"{ROOT}/benchmarks/make_data.tsv"
    conda:
        "../../environment.yml"
    params:
        pgpo=PGPO,
        out=lambda wc, output: str(Path(output[0]).parent),
        sizes=lambda wc: " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.get("data", {}).items()),
    shell:
        "{params.pgpo} make-data --out {params.out} --seed 0 {params.sizes} > {log} 2>&1"


rule warm_start:
    input:
        model=rules.build_tiny.output,
        data=rules.make_data.output,
    output:
        f"{ROOT}/model/warmstart/warmstart.json",
    log:
        f"{ROOT}/logs/warm_start.log",
    benchmark:
        f"{ROOT}/benchmarks/warm_start.tsv"
    conda:
        "../../environment.yml"
    threads: 2
    params:
        pgpo=PGPO,
        model=lambda wc, input: str(Path(input.model[0]).parent),
        data=lambda wc, input: str(Path(input.data[0]).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        sets=lambda wc: sets(config["warmstart"]),
    shell:
        "{params.pgpo} warm-start --model {params.model} --data {params.data} --out {params.out} {params.sets} "
        "> {log} 2>&1"
