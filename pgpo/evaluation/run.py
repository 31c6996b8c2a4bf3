"""One evaluation of a checkpoint, as `pgpo evaluate` runs it: lmms-eval generates k samples per question, then the
samples are scored on CPU and the checkpoint's model card lists the result. The CLI only parses arguments into this
call and prints what it returns."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pgpo.records.layout import Layout


def run_name(checkpoint: str) -> str:
    """runs/grpo-s0/final -> grpo-s0; runs/grpo-s0/checkpoint-60 -> grpo-s0-checkpoint-60; model/warmstart ->
    warmstart; a hub id Qwen/Qwen2.5-VL-3B-Instruct -> Qwen2.5-VL-3B-Instruct."""
    path = Path(checkpoint.rstrip("/"))
    if path.name == "final":
        return path.parent.name
    return f"{path.parent.name}-{path.name}" if path.name.startswith("checkpoint-") else path.name


def evaluate_checkpoint(checkpoint: str, config: str | Path, overrides: dict, out: str | Path | None = None,
                        benchmarks: list[str] | None = None, revision: str | None = None, overwrite: bool = False,
                        score: bool = True, summary: str | None = None, resume: bool = False) -> dict:
    """Generate (and, with `score`, score) `checkpoint` on `benchmarks` (default: the config's). Returns {"out": the
    run directory, "table": the scored table or None, "card": the refreshed model card or None}. `resume`: keep the
    samples of benchmarks an identical evaluation already finished in `out` (reusable), generate the others."""
    # evaluation never touches the network: datasets come from the local cache (`pgpo fetch` fills it)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from pgpo.config.overrides import check_checkpoint
    from pgpo.config.schema import COMMIT, ConfigError, is_hub_id
    from pgpo.evaluation import benchmarks as bm
    from pgpo.evaluation.config import load_eval_config

    check_checkpoint(checkpoint, "--checkpoint")
    cfg = load_eval_config(config, overrides)
    benches = bm.resolve(benchmarks or cfg.benchmarks)
    out = Path(out or Layout(f"results/{Path(config).stem}").eval_by_hand(run_name(checkpoint)))
    if revision:  # a hub model at a pinned commit: evaluate its cached snapshot (what training started from)
        from pgpo.models.processor import pinned_snapshot

        if not (is_hub_id(checkpoint) and COMMIT.fullmatch(revision)):
            raise ConfigError(f"--revision {revision!r}: needs a hub id checkpoint (org/name) and a 40-hex "
                              "commit (the full sha of the hub snapshot training started from)")
        checkpoint = pinned_snapshot(checkpoint, revision)
    if int(os.environ.get("RANK", "0")) != 0:  # the other ranks gather to rank 0, which holds the benchmarks
        return _evaluate(checkpoint, cfg, benches, out, overwrite, score, summary, resume)
    from pgpo.util.run_lock import lock_run_dir, release_run_dir

    # one lock per benchmark: the workflow's shards of one checkpoint share `out` and run at once
    held = []
    try:
        for b in benches:
            lock_run_dir(out, f"pgpo evaluate --checkpoint {checkpoint}", part=b.name)
            held.append(b.name)
        return _evaluate(checkpoint, cfg, benches, out, overwrite, score, summary, resume)
    finally:
        for name in reversed(held):
            release_run_dir(out, part=name)


def reusable(out: Path, bench: str, ckpt_hash: str, cfg) -> bool:
    """Whether `out` holds finished samples of `bench` made by this very evaluation: the same checkpoint (hash),
    evaluation config, data (a tiny suite's split hash) and code. The meta file is written after the samples, so its presence means finished;
    each benchmark's sampling is seeded on its own (pgpo_vlm reseeds per benchmark), so reusing some and
    generating the rest gives what one uninterrupted run gives."""
    import json
    from dataclasses import asdict

    from pgpo.data.datasets import sha256_file
    from pgpo.evaluation.benchmarks import tiny_source
    from pgpo.records.stages import read_samples_meta, samples_path
    from pgpo.util.errors import DataError
    from pgpo.util.provenance import code_version

    path = samples_path(out, bench)
    try:
        meta = read_samples_meta(path)
    except (FileNotFoundError, DataError):
        return False
    config = json.loads(json.dumps(asdict(cfg), default=str))
    # the data folder as configured now (the meta's is absolute: a copied results tree would check the original)
    split = tiny_source(bench, cfg.data) if meta.inputs.get("split_sha256") else None
    same_data = split is None or (split.is_file() and sha256_file(split) == meta.inputs["split_sha256"])
    return (path.is_file() and meta.checkpoint_hash == ckpt_hash and meta.raw.get("config") == config
            and meta.raw.get("code_version") == code_version() and same_data
            and meta.raw.get("samples_sha256") == sha256_file(path))


def _evaluate(checkpoint, cfg, benches, out: Path, overwrite: bool, score: bool, summary: str | None,
              resume: bool = False) -> dict:
    """evaluate_checkpoint once its inputs are resolved (and rank 0 holds `out`)."""
    from pgpo.evaluation.generate import generate
    from pgpo.evaluation.score import score_run

    kept = {}
    if resume:
        from pgpo.util.provenance import dir_hash

        # hashed once, not per benchmark (a 7B checkpoint is ~15 GB); generate records the same hash
        ckpt_hash = dir_hash(checkpoint) if Path(checkpoint).is_dir() else f"hub:{checkpoint}"
        kept = {b.name: out / "samples" / f"{b.name}.jsonl" for b in benches if reusable(out, b.name, ckpt_hash, cfg)}
    todo = [b for b in benches if b.name not in kept]
    existing = [b.name for b in todo if (out / "samples" / f"{b.name}.jsonl").exists()]
    if existing and not (overwrite or resume):
        raise FileExistsError(f"{out}/samples already holds {existing}; pass --resume to keep the benchmarks this "
                              f"same evaluation finished, --overwrite to regenerate them, --out for another run "
                              f"directory, or `pgpo score --run {out}` to re-score")
    if kept:
        print(f"{out}: reusing the finished samples of {sorted(kept)} (same checkpoint, config and code); "
              f"generating {[b.name for b in todo]}", flush=True)
    written = generate(checkpoint, todo, cfg, out, requested=[b.name for b in benches]) if todo else {}
    if written is None or not score or int(os.environ.get("RANK", "0")) != 0:  # rank 0 scores
        return {"out": out, "table": None, "card": None}
    written = {b.name: kept.get(b.name) or written[b.name] for b in benches}
    table = score_run(out, list(written), cfg.bootstrap_samples, cfg.seed, summary)
    from pgpo.results.model_card import refresh_card

    try:
        card = refresh_card(checkpoint, out)  # the card lists these results
    except OSError as e:  # a read-only checkpoint (a shared model store): the results stand, the card waits
        # printed, not warnings.warn: lmms-eval silences Python warnings during the run
        print(f"pgpo evaluate: warning: {checkpoint}: model card not updated ({e.strerror or e}: "
              f"{e.filename or ''}); the scored results are in {out}", file=sys.stderr, flush=True)
        card = None
    return {"out": out, "table": table, "card": card}
