"""Model cards (README.md) for training runs: what the checkpoint is, how it was trained, how it scores.

TRL's own card says "fine-tuned version of [None]" for a local base and knows nothing of the method. This one is
rendered from the run's records: run.json when the run finished (run_config.json while it trains), and the
evaluation results `pgpo evaluate` wrote. It goes to <run>/README.md (TRLBridge.create_model_card, at every
checkpoint save and at the end) and <run>/final/README.md; `refresh_card` adds evaluation results to a card pgpo
wrote, keeping them machine-readable in the front matter: `model-index` (the hub's format; every card loads with
huggingface_hub.ModelCard.load, its data unchanged) and pgpo's details under `pgpo_results`. README.md is not
part of any checkpoint hash (pgpo.util.provenance.dir_hash), so a card update never changes a checkpoint's identity.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pgpo.records.stages import SAMPLES_DIR, RunRecord, find_run, read_eval_result
from pgpo.util.atomic import write_atomic
from pgpo.util.jsonfile import read_json

MARKER = "<!-- written by pgpo (pgpo/results/model_card.py); pgpo evaluate adds results -->"
CARD = "README.md"




def base_license(base: str, revision: str = "") -> str | None:
    """The `license` of the base model's own card: a local folder's README.md, or a hub id's cached one."""
    card = Path(base).expanduser() / CARD
    if not card.is_file():
        from pgpo.config.schema import is_hub_id

        if not is_hub_id(base):
            return None
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(base, CARD, revision=revision or None)
        except (OSError, ValueError):  # a malformed id (HFValidationError) or cache: no license, still a card
            return None
        if not isinstance(cached, str):
            return None
        card = Path(cached)
    front, _ = split_front_matter(card.read_text(errors="replace"))
    value = front.get("license")
    return str(value) if value else None


def split_front_matter(text: str) -> tuple[dict, str]:
    """(YAML front matter as a dict, the rest) of a model card; ({}, text) without front matter."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            try:
                front = yaml.safe_load(text[4:end]) or {}
            except yaml.YAMLError:
                front = {}
            return (front if isinstance(front, dict) else {}), text[end + 4:].lstrip("\n")
    return {}, text


def read_results(eval_dir: str | Path) -> dict[str, dict]:
    """{benchmark: result} of an evaluation run directory: every <benchmark>.json `pgpo score` wrote (pgpo's
    grader) next to a samples file."""
    root = Path(eval_dir)
    out = {}
    for samples in sorted((root / SAMPLES_DIR).glob("*.jsonl")):
        r = read_eval_result(root, samples.stem, optional=True)
        if r is not None:
            out[samples.stem] = {"avg_at_k": r.avg_at_k, "k": r.k, "ci95": r.ci95_bootstrap or None,
                                 "n_questions": r.n_questions, "n_failed": r.n_failed, "source": str(root)}
    return out


# pgpo's details of each result (interval, question and failure counts, the evaluation directory), beside the
# model-index: huggingface_hub's loader (ModelCard.load) rebuilds model-index from its own fields and drops any other
# key of a result, and refuses a `source` without a `url` (an evaluation directory is a local path, not a URL)
DETAILS = "pgpo_results"


def model_index(name: str, results: dict[str, dict]) -> list[dict]:
    """The hub's model-index entry for `results` (one metric avg@k per benchmark), exactly the fields the hub's
    loader keeps, so a card loaded with huggingface_hub.ModelCard.load gives back what was written."""
    entries = []
    for bench, r in sorted(results.items()):
        metric = {"type": f"avg@{r['k']}", "name": f"avg@{r['k']}", "value": round(float(r["avg_at_k"]), 4)}
        entries.append({"task": {"type": "visual-question-answering"},
                        "dataset": {"name": bench, "type": bench}, "metrics": [metric]})
    return [{"name": name, "results": entries}] if entries else []


def result_details(results: dict[str, dict]) -> dict[str, dict]:
    """{benchmark: pgpo's details} for the DETAILS key of the front matter."""
    return {bench: {k: r[k] for k in ("ci95", "n_questions", "n_failed", "source") if k in r}
            for bench, r in sorted(results.items())}


def results_from_front(front: dict) -> dict[str, dict]:
    """The results a card already records (inverse of model_index and result_details). Cards written before the
    details moved out of model-index kept them in each result's `pgpo` and `source.name`: read too."""
    out = {}
    details = front.get(DETAILS) or {}
    for entry in front.get("model-index") or []:
        for r in entry.get("results") or []:
            metric = (r.get("metrics") or [{}])[0]
            k = str(metric.get("type", "avg@0")).split("@")[-1]
            bench = r["dataset"]["name"]
            out[bench] = {"avg_at_k": metric.get("value"), "k": int(k) if k.isdigit() else k,
                          "source": (r.get("source") or {}).get("name", ""), **(r.get("pgpo") or {}),
                          **(details.get(bench) or {})}
    return out


def _steps(run: RunRecord, step: int | None) -> str:
    target = run.config.get("max_steps")
    if run.finished:
        resumed = f", resumed from {Path(run.resumed_from).name}" if run.resumed_from else ""
        return f"{run.global_steps} (finished in {run.wall_seconds} s{resumed})"
    return f"{step if step is not None else '?'} of {target} (training in progress)"


def _base_text(base: str, revision: str) -> str:
    text = f"`{base}`" + (f" at commit `{revision}`" if revision else "")
    warm = Path(base).expanduser() / "warmstart.json"
    if warm.is_file():  # the tiny profile's RL starts from a supervised warm start of the built base
        text += f" (a supervised warm start of `{read_json(warm, '`pgpo warm-start`', what='warm-start record').get('base')}`)"
    return text


def card_text(run: RunRecord, name: str, results: dict[str, dict] | None = None, step: int | None = None,
              checkpoint: str = ".") -> str:
    """The model card of a run (run.json, or run_config.json while it trains) as markdown with YAML front matter."""
    from pgpo.config.schema import is_hub_id

    method, cfg = run.method, run.config
    base, revision = cfg["model"]["path"], cfg["model"].get("revision", "")
    front = {"library_name": "transformers", "pipeline_tag": "image-text-to-text",
             "tags": sorted({"pgpo-harness", "reinforcement-learning", "trl", method["name"], method["loss"]["type"]})}
    if is_hub_id(base):
        front = {"base_model": base, "base_model_relation": "finetune", **front}
    license_ = base_license(base, revision)
    if license_:
        front["license"] = license_
    if results:
        front["model-index"] = model_index(name, results)
        front[DETAILS] = result_details(results)
    inputs = run.inputs
    rows = [("Base model", _base_text(base, revision) + (f", files sha256 `{inputs['model_hash']}`"
                                                          if inputs.get("model_hash") else "")),
            ("Method", f"`{method['name']}`: {method.get('description', '')}"),
            ("Recipe", f"profile `{cfg.get('profile')}`, hash `{run.config_hash}`, seed {cfg.get('seed')}"),
            ("Training data", f"`{cfg['data']['train']}`" + (f", sha256 `{inputs['train_split_sha256']}`"
                                                             if inputs.get("train_split_sha256") else "")),
            ("Steps", _steps(run, step)),
            ("Code", f"`{run.code_version}`" if run.code_version else "recorded in run.json at the end")]
    if run.final_checkpoint_hash:
        rows.append(("final/ files sha256", f"`{run.final_checkpoint_hash}`"))
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", MARKER, "",
             f"# {name}", "", f"Qwen2.5-VL trained with RL by the PGPO reproduction harness: method `{method['name']}`.",
             "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
             "## Method and its parameters", "", "```yaml", yaml.safe_dump(method, sort_keys=False).rstrip(), "```",
             "", "## Recipe", "", "```yaml",
             yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "", "## Evaluation", ""]
    if results:
        lines += ["| benchmark | avg@k | 95% CI | questions | failed samples | results |", "|---|---|---|---|---|---|"]
        for bench, r in sorted(results.items()):
            ci = r.get("ci95")
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
            lines.append(f"| {bench} | {float(r['avg_at_k']):.3f} (k={r['k']}) | {ci_text} | "
                         f"{r.get('n_questions', '-')} | {r.get('n_failed', '-')} | `{r.get('source', '')}` |")
    else:
        lines.append(f"Not evaluated yet: `pgpo evaluate --checkpoint {checkpoint}` adds its results here.")
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForImageTextToText, AutoProcessor",
              "", f'model = AutoModelForImageTextToText.from_pretrained("{checkpoint}")',
              f'processor = AutoProcessor.from_pretrained("{checkpoint}")', "```", "",
              ("Prompt as in training (pgpo/data/prompts.py): the system prompt, the images before the question, the "
               "reasoning in `<think></think>` and the answer in `\\boxed{}`."), ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> Path:
    return write_atomic(path, text)  # a reader never sees half a card


def run_name(run_dir: Path) -> str:
    """runs/tiny/pgpo-s0 -> pgpo-s0; ablation/tiny/tau0.4_beta2/s0 -> tau0.4_beta2-s0."""
    return f"{run_dir.parent.name}-{run_dir.name}" if run_dir.name[:1] == "s" and run_dir.name[1:].isdigit() \
        else run_dir.name


def write_run_cards(run_dir: str | Path, step: int | None = None) -> list[Path]:
    """The card of a run: <run>/README.md, and <run>/final/README.md once final/ exists. None without records."""
    run_dir = Path(run_dir)
    run = find_run(run_dir)
    if run is None:
        return []
    written = [_write(run_dir / CARD, card_text(run, run_name(run_dir), step=step, checkpoint=str(run_dir / "final")))]
    final = run_dir / "final"
    if (final / "config.json").is_file():
        results = results_from_front(split_front_matter((final / CARD).read_text())[0]) if (final / CARD).is_file() \
            else {}
        written.append(_write(final / CARD, card_text(run, run_name(run_dir), results, step, str(final))))
    return written


def refresh_card(checkpoint: str | Path, eval_dir: str | Path) -> Path | None:
    """Add the results of evaluation run `eval_dir` to the checkpoint's card, if pgpo wrote that card (a hub
    model's own README is never touched). Results of other evaluation runs already in the card are kept; a
    benchmark evaluated again is replaced. Returns the card's path, or None when there is no pgpo card."""
    from filelock import FileLock

    ckpt = Path(checkpoint)
    card = ckpt / CARD
    if not card.is_file() or MARKER not in card.read_text(errors="replace"):
        return None
    run_dir = ckpt.parent
    run = find_run(run_dir)
    if run is None:
        return None
    with FileLock(str(ckpt / f".{CARD}.lock")):  # evaluation shards of one checkpoint finish concurrently
        results = {**results_from_front(split_front_matter(card.read_text())[0]), **read_results(eval_dir)}
        step = int(ckpt.name.split("-")[-1]) if ckpt.name.startswith("checkpoint-") else None
        return _write(card, card_text(run, run_name(run_dir), results, step, str(ckpt)))
