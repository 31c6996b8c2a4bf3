"""Rollout samples beside the curves: at every `samples.every`-th optimizer step, the first `samples.rollouts`
rollouts of process 0's batch go to <run>/samples.jsonl, one RolloutSample per line, with what the method did to
them token by token (the dependency S and the weight each token's advantage got).

Two moments make one sample. At the rollout (``select``): the prompt, its images, the response and its reward,
and a [B] tensor ``sample_slot`` (-1, or the sample's index) put into the rollout batch, so that TRL shuffles and
splits it with its response. At shaping (``observe``), wherever that happens (the whole batch, or each micro-batch
when a per-response shaper shapes inside the loss): the sequence advantage, the token advantages and, for
blind-view methods, the dependency. A token's weight is its advantage over the sequence advantage (1 everywhere
for GRPO/DAPO; PGPO's w~), so no method's name or parameters are read here. Nothing is logged in evaluation mode.
A resumed run truncates the file to its checkpoint (truncate_samples) and logs the later steps again: identical,
as the rollouts are.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

SAMPLES_FILE = "samples.jsonl"


@dataclass
class RolloutSample:
    """One logged rollout (a line of samples.jsonl)."""

    step: int
    """The optimizer step it was trained in (metrics.jsonl's step)."""
    index: int
    """Its place among the step's logged rollouts (rollouts of one prompt are contiguous)."""
    prompt_id: str
    """The training row's id."""
    prompt: str
    """The prompt as the model saw it (chat template; a run of image tokens shown once with its count)."""
    images: list[str]
    """The images' files."""
    response: str
    """The sampled response."""
    tokens: list[str]
    """The response's tokens, decoded one by one."""
    reward: float | None
    """Its reward, weighted as trained on (None: unscorable)."""
    advantage: float
    """Its sequence advantage (group-relative), before token shaping."""
    token_advantages: list[float]
    """The advantage each token was trained with."""
    weights: list[float] | None
    """token advantage / sequence advantage (None when the sequence advantage is 0: no signal to weigh)."""
    dependency: list[float] | None
    """Per-token visual dependency S (methods with a blind view), else None."""


def collapse_image_tokens(text: str) -> str:
    """'<|image_pad|>' x N -> '<|image_pad|>xN': a prompt with hundreds of visual tokens stays readable."""
    return re.sub(r"((<\|[a-z_]+_pad\|>))\1+", lambda m: f"{m.group(2)}x{len(m.group(0)) // len(m.group(2))}", text)


def image_files(row: dict) -> list[str]:
    """The files of a training row's images (decoded PIL images keep their filename)."""
    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    return [im if isinstance(im, str) else str(getattr(im, "filename", "") or "") for im in images]


class SampleLog:
    """Collects the samples of logged steps and appends them to `path` (process 0 only)."""

    def __init__(self, path: str | Path, every: int, rollouts: int, tokenizer, main_process: bool):
        self.path, self.every, self.rollouts = Path(path), every, rollouts
        self.tokenizer, self.main = tokenizer, main_process
        self.pending: dict[int, dict] = {}  # index -> what the rollout knew, until shaping completes it
        self.done: list[RolloutSample] = []

    def due(self, step: int) -> bool:
        return self.main and self.every > 0 and self.rollouts > 0 and step % self.every == 0

    def select(self, out: dict, rows: list[dict], step: int) -> None:
        """At the rollout of optimizer step `step` (1-based): remember the first rollouts' text and reward and
        mark them in out["sample_slot"] [B]."""
        import torch  # here: the tracking side reads samples without importing torch

        ids = out["completion_ids"]
        slot = torch.full((ids.size(0),), -1, dtype=torch.long, device=ids.device)
        if not self.due(step):
            out["sample_slot"] = slot
            return
        self.pending.clear()
        self.done = []
        rewards = out.get("rollout_rewards")
        for i in range(min(self.rollouts, ids.size(0))):
            slot[i] = i
            prompt = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
            completion = ids[i][out["completion_mask"][i].bool()].tolist()
            reward = None if rewards is None or rewards[i] != rewards[i] else float(rewards[i])  # NaN: unscorable
            self.pending[i] = {
                "step": step, "index": i, "prompt_id": str(rows[i].get("id", "")),
                "prompt": collapse_image_tokens(self.tokenizer.decode(prompt, skip_special_tokens=False)),
                "images": image_files(rows[i]), "response": self.tokenizer.decode(completion, skip_special_tokens=True),
                "tokens": self.tokenizer.batch_decode([[t] for t in completion], skip_special_tokens=False),
                "reward": reward, "n": len(completion)}
        out["sample_slot"] = slot

    def observe(self, batch: dict, advantages, token_advantages, dependency) -> None:
        """At shaping: `batch` (the rollout or one micro-batch of it) with its sample_slot [b], its sequence
        advantages [b] and shaped token advantages [b,T]; dependency [b,T] or None. Completes and writes the
        pending samples it holds."""
        slots = batch.get("sample_slot")
        if not self.pending or slots is None:
            return
        for row in (slots >= 0).nonzero().flatten().tolist():
            partial = self.pending.pop(int(slots[row]), None)
            if partial is None:
                continue
            mask = batch["completion_mask"][row].bool()
            n = partial.pop("n")
            adv = float(advantages[row])
            tok = token_advantages[row][mask].float()
            self.done.append(RolloutSample(
                **partial, advantage=adv, token_advantages=_round(tok[:n]),
                weights=_round(tok[:n] / adv) if adv != 0 else None,
                dependency=None if dependency is None else _round(dependency[row][mask][:n])))
        if not self.pending and self.done:  # the step's samples in index order, whatever order TRL shuffled
            with open(self.path, "a") as f:
                f.writelines(json.dumps(asdict(s)) + "\n" for s in sorted(self.done, key=lambda s: s.index))
            self.done = []


def _round(values) -> list[float]:
    return [round(float(v), 6) for v in values]


def read_samples(run_dir: str | Path, live: bool = False) -> list[dict]:
    """The lines of <run_dir>/samples.jsonl ([] if there is none). `live`: the run may be writing (or was killed
    writing), so a torn last line is skipped; anywhere else an unreadable line is a DataError naming it."""
    from pgpo.util.errors import DataError

    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    lines, rows = path.read_text().splitlines(), []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            problem = None if isinstance(row, dict) and isinstance(row.get("step"), int) else "no integer step"
        except json.JSONDecodeError as e:
            problem = e.msg
        if problem:
            if live and i == len(lines):
                break
            raise DataError(f"{path}:{i}: not a rollout sample ({problem}); `pgpo train` writes them, a resumed "
                            "run keeps those up to its checkpoint")
        rows.append(row)
    return rows


def truncate_samples(run_dir: str | Path, step: int | None) -> None:
    """On resume from the checkpoint of `step`, keep the samples up to it; on a fresh start (None), none."""
    from pgpo.util.atomic import write_atomic

    path = Path(run_dir) / SAMPLES_FILE
    if step is None:
        path.unlink(missing_ok=True)
    elif path.exists():
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in read_samples(run_dir, live=True) if r["step"] <= step))
