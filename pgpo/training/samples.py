"""Rollout samples beside the curves: at every `samples.every`-th optimizer step, the first `samples.rollouts`
rollouts of process 0's batch go to <run>/samples.jsonl, one RolloutSample per line, with what the method did to
them token by token (the dependency S and the weight each token's advantage got).

Three moments make one sample. At the rollout (``select``): the prompt, its images, the response and its reward,
and a [B] tensor ``sample_slot`` (-1, or the sample's index) put into the rollout batch, so that TRL shuffles and
splits it with its response. At shaping (``observe``), wherever that happens (the whole batch, or each micro-batch
when a per-response shaper shapes inside the loss): the sequence advantage, the token advantages and, for
blind-view methods, the dependency. At its loss (``stamp``): the optimizer step that trained on it. A token's weight is its advantage over the sequence advantage (1 everywhere
for GRPO/DAPO; PGPO's w~), so no method's name or parameters are read here. Nothing is logged in evaluation mode.
A resumed run truncates the file to its checkpoint (pgpo.records.stages.truncate_samples) and logs the later steps again: identical,
as the rollouts are.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class RolloutSample:
    """One logged rollout (a line of samples.jsonl)."""

    step: int
    """The optimizer step that trained on it (metrics.jsonl's step)."""
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
    """Collects the samples of logged steps and appends them to `path` (process 0 only).

    One rollout may serve several optimizer steps (`steps_per_rollout`: prompts_per_step / update_prompts; TRL
    shuffles the rollout before splitting it over them): a rollout is sampled when any step it serves is a multiple
    of `every`, and each sample is labelled with the step that trained on it (``stamp``, at its loss)."""

    def __init__(self, path: str | Path, every: int, rollouts: int, tokenizer, main_process: bool,
                 steps_per_rollout: int = 1):
        self.path, self.every, self.rollouts = Path(path), every, rollouts
        self.tokenizer, self.main, self.steps_per_rollout = tokenizer, main_process, max(1, steps_per_rollout)
        self.pending: dict[int, dict] = {}  # index -> what the rollout knew, until shaping completes it
        self.shaped: dict[int, dict] = {}  # index -> the sample without its step, until a loss stamps it
        self.steps: dict[int, int] = {}  # index -> the optimizer step that trained on it

    def due(self, done_steps: int) -> bool:
        """Whether the rollout made after `done_steps` optimizer steps is sampled."""
        serves = range(done_steps + 1, done_steps + self.steps_per_rollout + 1)
        return self.main and self.every > 0 and self.rollouts > 0 and any(s % self.every == 0 for s in serves)

    def select(self, out: dict, rows: list[dict], done_steps: int) -> None:
        """At a rollout made after `done_steps` optimizer steps: remember the first rollouts' text and reward and
        mark them in out["sample_slot"] [B]."""
        import torch  # here: the tracking side reads samples without importing torch

        ids = out["completion_ids"]
        slot = torch.full((ids.size(0),), -1, dtype=torch.long, device=ids.device)
        if not self.due(done_steps):
            out["sample_slot"] = slot
            return
        self.pending, self.shaped, self.steps = {}, {}, {}
        rewards = out.get("rollout_rewards")
        for i in range(min(self.rollouts, ids.size(0))):
            slot[i] = i
            prompt = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
            completion = ids[i][out["completion_mask"][i].bool()].tolist()
            reward = None if rewards is None or rewards[i] != rewards[i] else float(rewards[i])  # NaN: unscorable
            self.pending[i] = {
                "index": i, "prompt_id": str(rows[i].get("id", "")),
                "prompt": collapse_image_tokens(self.tokenizer.decode(prompt, skip_special_tokens=False)),
                "images": image_files(rows[i]), "response": self.tokenizer.decode(completion, skip_special_tokens=True),
                "tokens": self.tokenizer.batch_decode([[t] for t in completion], skip_special_tokens=False),
                "reward": reward, "n": len(completion)}
        out["sample_slot"] = slot

    def observe(self, batch: dict, advantages, token_advantages, dependency) -> None:
        """At shaping: `batch` (the rollout or one micro-batch of it) with its sample_slot [b], its sequence
        advantages [b] and shaped token advantages [b,T]; dependency [b,T] or None."""
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
            tok = token_advantages[row][mask].detach().float().cpu()[:n]  # one device copy, not one per token
            self.shaped[partial["index"]] = {
                **partial, "advantage": adv, "token_advantages": _round(tok),
                "weights": _round(tok / adv) if adv != 0 else None,
                "dependency": None if dependency is None else _round(dependency[row][mask].detach().float().cpu()[:n])}
        self._write_if_complete()

    def stamp(self, batch: dict, step: int) -> None:
        """At the loss of optimizer step `step`: the samples of this micro-batch were trained on in it (the first
        such step counts, if a rollout is trained on more than once)."""
        slots = batch.get("sample_slot")
        if slots is None or not (self.pending or self.shaped):
            return
        for slot in slots[slots >= 0].tolist():
            self.steps.setdefault(int(slot), step)
        self._write_if_complete()

    def _write_if_complete(self) -> None:
        if self.pending or not self.shaped or set(self.shaped) - set(self.steps):
            return
        with open(self.path, "a") as f:  # the rollout's samples in index order, whatever order TRL shuffled
            f.writelines(json.dumps(asdict(RolloutSample(step=self.steps[i], **self.shaped[i]))) + "\n"
                         for i in sorted(self.shaped))
        self.shaped, self.steps = {}, {}


def _round(values) -> list[float]:
    return [round(v, 6) for v in values.tolist()]
