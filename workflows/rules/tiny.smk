# The tiny profile builds its own model and data and warm-starts once; every method and seed starts from there.


rule build_tiny:
    output:
        f"{LAYOUT.model('base')}/config.json",
    log:
        LAYOUT.log("build_tiny"),
    benchmark:
        LAYOUT.benchmark("build_tiny")
    conda:
        "../../environment.yml"
    params:
        pgpo=PGPO,
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "{params.pgpo} build-tiny --out {params.out} --seed 0 > {log} 2>&1"


rule make_data:
    output:
        f"{LAYOUT.data}/MANIFEST.json",
    log:
        LAYOUT.log("make_data"),
    benchmark:
        LAYOUT.benchmark("make_data")
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
        f"{LAYOUT.model('warmstart')}/warmstart.json",
    log:
        LAYOUT.log("warm_start"),
    benchmark:
        LAYOUT.benchmark("warm_start")
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
