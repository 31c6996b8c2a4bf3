"""One evaluation of a checkpoint, as `pgpo evaluate` runs it: lmms-eval generates k samples per question, then the
samples are scored on CPU and the checkpoint's model card lists the result. The CLI only parses arguments into this
call and prints what it returns."""

from __future__ import annotations

import os
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
                        score: bool = True, summary: str | None = None) -> dict:
    """Generate (and, with `score`, score) `checkpoint` on `benchmarks` (default: the config's). Returns {"out": the
    run directory, "table": the scored table or None, "card": the refreshed model card or None}."""
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
    if int(os.environ.get("RANK", "0")) != 0:  # the other ranks gather to rank 0, which holds the directory
        return _evaluate(checkpoint, cfg, benches, out, overwrite, score, summary)
    from pgpo.util.run_lock import lock_run_dir, release_run_dir

    lock_run_dir(out, f"pgpo evaluate --checkpoint {checkpoint}")
    try:
        return _evaluate(checkpoint, cfg, benches, out, overwrite, score, summary)
    finally:
        release_run_dir(out)


def _evaluate(checkpoint, cfg, benches, out: Path, overwrite: bool, score: bool, summary: str | None) -> dict:
    """evaluate_checkpoint once its inputs are resolved (and rank 0 holds `out`)."""
    from pgpo.evaluation.generate import generate
    from pgpo.evaluation.score import score_run

    existing = [b.name for b in benches if (out / "samples" / f"{b.name}.jsonl").exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out}/samples already holds {existing}; pass --overwrite to regenerate them, "
                              f"--out for another run directory, or `pgpo score --run {out}` to re-score")
    written = generate(checkpoint, benches, cfg, out)
    if written is None or not score:
        return {"out": out, "table": None, "card": None}
    table = score_run(out, list(written), cfg.bootstrap_samples, cfg.seed, summary)
    from pgpo.results.model_card import refresh_card

    return {"out": out, "table": table, "card": refresh_card(checkpoint, out)}  # the card lists these results
