"""Gradient diagnostic (issue 21, item 3): do several methods' token advantages give different gradient estimators
on the same rollouts, before any RL is run?

From one checkpoint: roll out prompt groups of a data split ONCE (groups whose rewards all agree carry no
gradient for any method and are skipped, like dynamic sampling), then for every method shape those same rollouts
with its components and compute one gradient per group of the training loss (TRL's loss through the trainer, the
DAPO token mean, on-policy: ratio 1), with one normaliser for every group and method (the set's tokens / groups, so
the mean over groups is the DAPO gradient of the whole set). The vectors reduce to Gram matrices (within and
across methods) and pgpo.stats.gram_stats gives signal, noise, noise scale, split-half agreement and the alignment with a
reference method, with paired bootstrap intervals over groups: raw, and Adam-preconditioned, g / (sqrt(v) + eps)
with v the checkpoint's Adam second moments (bias-corrected) when its optimizer.pt matches the model, else the
gradients' own second moment (pooled over methods and groups); the output says which.

Nothing here knows a method: the methods and the reference arrive as YAML files (the reference is typically the
oracle control, baselines/variants/dapo_oracle.yaml).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from pgpo.config.schema import ConfigError, MethodConfig, TrainConfig
from pgpo.stats.gram_stats import bootstrap_stats
from pgpo.util.atomic import write_atomic


def collect_groups(trainer, groups: int, seed: int, chunk: int = 8) -> tuple[dict, int]:
    """Roll out prompts of the trainer's training set in a seeded order, `chunk` prompts (x G) per rollout, until
    `groups` groups whose rewards differ are collected. Returns one rollout dict of those groups (rows attached,
    in draw order) and the number of prompts drawn."""
    from pgpo.training.dynamic_sampling import merge_rows

    data = trainer.train_dataset
    order = random.Random(f"gradient-diagnostic/{seed}").sample(range(len(data)), len(data))
    g = trainer.num_generations
    batches, picks, drawn = [], [], 0
    while len(picks) < groups and drawn < len(order):
        prompts = order[drawn: drawn + chunk]
        drawn += len(prompts)
        rows = [data[i] for i in prompts for _ in range(g)]
        batch, keep = trainer._scored_rollout(rows, "train")
        batch["rows"] = rows
        batches.append(batch)
        picks += [(len(batches) - 1, int(k)) for k in torch.nonzero(keep).flatten()]
    if len(picks) < groups:
        raise ConfigError(f"gradient diagnostic: only {len(picks)} of the {drawn} prompt groups of the data split "
                          f"have rewards that differ; {groups} needed (a checkpoint at 0% or 100% accuracy "
                          f"gives no gradient: use another checkpoint, a larger split or fewer --groups)")
    picks = picks[:groups]
    out = merge_rows(batches, [(b, grp * g + j) for b, grp in picks for j in range(g)], trainer.pad_token_id)
    return out, drawn


def _check_methods(methods: list[MethodConfig], reference: str) -> None:
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"gradient diagnostic: method names must differ, got {names}")
    if reference not in names:
        raise ConfigError(f"gradient diagnostic: the reference {reference!r} is not among the methods {names}")
    for m in methods:
        if m.loss != methods[0].loss:
            raise ConfigError(f"gradient diagnostic: {m.name} has other loss settings than {methods[0].name} "
                              f"({m.loss} vs {methods[0].loss}): the estimators must share one loss")
        if m.loss.type != "dapo":
            raise ConfigError(f"gradient diagnostic: {m.name} uses loss.type={m.loss.type!r}; the diagnostic "
                              "compares token advantages under the DAPO token-mean loss")


def trainable(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters a gradient is taken of, in a fixed order (the flat vectors' layout)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def group_gradients(trainer, method: MethodConfig, rollout: dict, groups: int, normaliser: float) -> torch.Tensor:
    """[groups, P] per-group gradients of the training loss under `method`'s token advantages on `rollout`."""
    from pgpo.training.trl_bridge import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

    trainer.use_method(method)
    shaped = trainer._shape_advantages({**rollout, "rows": list(rollout["rows"])}, "train")
    params = trainable(trainer.model)
    out = torch.zeros(groups, sum(p.numel() for _, p in params), device="cpu")  # rows collected on the host
    for i, chunk in enumerate(split_tensor_dict(split_pixel_values_by_grid(shaped), groups)):
        chunk = unsplit_pixel_values_by_grid(chunk)
        chunk["num_items_in_batch"] = torch.tensor(normaliser, device=chunk["completion_mask"].device)
        trainer.model.zero_grad(set_to_none=True)
        trainer._compute_loss(trainer.model, chunk).backward()
        out[i] = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float().cpu()
                            for _, p in params])
    trainer.model.zero_grad(set_to_none=True)
    return out


def adam_second_moments(trainer, checkpoint: Path) -> tuple[torch.Tensor | None, str]:
    """The bias-corrected Adam second moments v_hat of the trainable parameters (flat, in `trainable` order) from
    `checkpoint`/optimizer.pt, or None and the reason. transformers' Trainer puts the parameters in two groups
    (with and without weight decay), each in named_parameters order; a shape mismatch means another layout."""
    path = checkpoint / "optimizer.pt"
    if not path.is_file():
        return None, f"no optimizer.pt in {checkpoint}"
    state = torch.load(path, map_location="cpu", weights_only=True)
    params = trainable(trainer.model)
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    order = [n for n, _ in params if n in decay] + [n for n, _ in params if n not in decay]
    indices = [i for group in state["param_groups"] for i in group["params"]]
    if len(indices) != len(order):
        return None, f"optimizer.pt holds {len(indices)} parameters, the model {len(order)} trainable ones"
    beta2 = state["param_groups"][0].get("betas", (0.9, 0.999))[1]
    by_name = {}
    for name, index in zip(order, indices):
        entry = state["state"].get(index, {})
        shape = dict(params)[name].shape
        if "exp_avg_sq" not in entry or entry["exp_avg_sq"].shape != shape:
            return None, f"optimizer.pt's state for {name} does not match its shape {tuple(shape)}"
        step = float(entry.get("step", 1))
        by_name[name] = entry["exp_avg_sq"].float() / (1 - beta2 ** max(step, 1.0))
    return torch.cat([by_name[n].flatten() for n, _ in params]), f"Adam second moments of {path} (bias-corrected)"


def gram(vectors: torch.Tensor, block: int = 1 << 16) -> np.ndarray:
    """[M,N,P] -> [M,N,M,N] inner products in float64 (accumulated over blocks of parameters)."""
    m, n, p = vectors.shape
    flat = vectors.reshape(m * n, p)
    out = torch.zeros(m * n, m * n, dtype=torch.float64, device=vectors.device)
    for start in range(0, p, block):
        piece = flat[:, start: start + block].double()
        out += piece @ piece.T
    return out.reshape(m, n, m, n).numpy()


def diagnose(cfg: TrainConfig, methods: list[MethodConfig], reference: str, groups: int, out_dir: Path, *,
             seed: int = 0, bootstrap: int = 1000, max_memory_gb: float = 4.0, adam_eps: float | None = None) -> dict:
    """Run the diagnostic (see the module docstring); writes gradient_diagnostic.json and .md to `out_dir`."""
    from pgpo.training.run import build_trainer

    _check_methods(methods, reference)
    if groups < 4:
        raise ConfigError(f"gradient diagnostic: --groups must be >= 4 (got {groups})")
    out_dir = Path(out_dir)
    trainer = build_trainer(cfg, methods[0], out_dir / "trainer")
    trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation  # loss normaliser: as given
    trainer.model.train()
    p = sum(x.numel() for _, x in trainable(trainer.model))
    need = len(methods) * groups * p * 4 * 2 / 2**30  # raw and preconditioned copies
    if need > max_memory_gb:
        raise ConfigError(f"gradient diagnostic: {len(methods)} methods x {groups} groups x {p} parameters need "
                          f"{need:.1f} GiB of gradients (limit --max-memory-gb {max_memory_gb})")
    torch.manual_seed(seed)
    rollout, drawn = collect_groups(trainer, groups, seed)
    normaliser = float(rollout["completion_mask"].sum()) / groups
    vectors = torch.stack([group_gradients(trainer, m, rollout, groups, normaliser) for m in methods])
    eps = adam_eps if adam_eps is not None else cfg.optim.adam_epsilon
    v, source = adam_second_moments(trainer, Path(cfg.model.path))
    if v is None:
        reason = source
        v = vectors.pow(2).mean(dim=(0, 1))
        source = f"the gradients' own second moment, pooled over methods and groups ({reason})"
    names = [m.name for m in methods]
    result = {
        "checkpoint": str(cfg.model.path), "data": str(cfg.data.train), "methods": names, "reference": reference,
        "groups": groups, "prompts_drawn": drawn, "group_size": trainer.num_generations, "parameters": p,
        "completion_tokens": int(rollout["completion_mask"].sum()), "seed": seed, "bootstrap": bootstrap,
        "preconditioner": source,
        "raw": bootstrap_stats(gram(vectors), names, reference, bootstrap=bootstrap, seed=seed),
        "adam": bootstrap_stats(gram(vectors / (v.sqrt() + eps)), names, reference, bootstrap=bootstrap, seed=seed),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic((out_dir / "gradient_diagnostic.json"), json.dumps(_finite(result), indent=2))
    write_atomic((out_dir / "gradient_diagnostic.md"), markdown(result))
    return result


def _finite(x):
    """JSON without NaN/Infinity (not JSON): a non-finite number becomes null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _fmt(cell: dict) -> str:
    value, ci = cell["value"], cell.get("ci95") or cell.get("range95")
    if value is None:
        return "n/a"
    text = f"{value:.4g}"
    return f"{text} [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else text


def markdown(result: dict) -> str:
    """A short report: per method and view, the statistics with their 95% intervals; the noise-scale ratios."""
    ref = result["reference"]
    title = (f"# Gradient diagnostic: {result['groups']} groups of {result['group_size']} rollouts "
             f"({result['prompts_drawn']} prompts drawn), {result['parameters']} parameters")
    about = (f"Checkpoint `{result['checkpoint']}`, data `{result['data']}`, seed {result['seed']}, "
             f"{result['raw']['bootstrap']} paired bootstrap draws over groups. Preconditioner: "
             f"{result['preconditioner']}. Noise scale = tr(cov) / |E g|^2, in groups. Brackets: 95% paired bootstrap "
             "intervals; for split-half, the 2.5-97.5% range over random splits.")
    lines = [title, "", about, ""]
    for view in ("raw", "adam"):
        header = (f"| method | signal | noise | noise scale | split-half | cos(means) with {ref} | "
                  f"cos(expectations) with {ref} |")
        lines += [f"## {'Raw gradients' if view == 'raw' else 'Adam-preconditioned gradients'}", "",
                  header, "|---|---|---|---|---|---|---|"]
        for name, s in result[view]["per_estimator"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k in (
                "signal", "noise", "noise_scale", "split_half", "cosine_of_means", "cosine_of_expectations")) + " |")
        names = result["methods"]
        lines += ["", "Noise-scale ratio (row / column):", "", "| | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for a in names:
            ratios = result[view]["noise_scale_ratio"][a]
            lines.append(f"| {a} | " + " | ".join("1" if b == a else _fmt(ratios[b]) for b in names) + " |")
        lines.append("")
    return "\n".join(lines)
