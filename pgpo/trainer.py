"""The one trainer: TRL's GRPOTrainer with token-level advantages from a registered shaper.

The only override is ``_generate_and_score_completions`` (TRL's loss already accepts [B,T] advantages). Per
generation step, without gradient: roll out (with DAPO dynamic sampling if the method asks), compute the image-
conditioned and blind log-probs of the sampled completions if the shaper needs the visual dependency, and hand the
shaper's token advantages to TRL's loss. Methods differ only by their YAML; nothing here reads a method's name.
"""

from __future__ import annotations

import random

import torch
from trl import GRPOTrainer

from pgpo.blind import BLIND_VIEWS
from pgpo.config import MethodConfig
from pgpo.dependency import k3
from pgpo.dynamic_sampling import choose_groups, groups_with_signal, merge_rows
from pgpo.shaping import SHAPERS, ShapingBatch


class PGPOTrainer(GRPOTrainer):
    def __init__(self, *args, method: MethodConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.shaper = SHAPERS.get(method.shaper.name)
        self.shaper_params = self.shaper.make_params(method.shaper.params)
        self.blind_view = BLIND_VIEWS.get(method.blind_view) if self.shaper.needs_dependency else None
        self._prompt_rng = random.Random(self.args.seed * 1_000_003 + self.accelerator.process_index)

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        if training and self.method.dynamic_sampling.enabled:
            out = self._dynamic_sampling_rollout(inputs)
        else:
            out = super()._generate_and_score_completions(inputs)
        return self._shape_advantages(out, "train" if training else "eval")

    # -- DAPO dynamic sampling ---------------------------------------------------------------------------------
    def _dynamic_sampling_rollout(self, inputs):
        g = self.num_generations
        n_groups = len(inputs) // g
        batches, keeps = [], []
        while True:
            batch = super()._generate_and_score_completions(inputs if not batches else self._draw_prompts(n_groups))
            batches.append(batch)
            keeps.append(groups_with_signal(batch["advantages"], g))
            kept = sum(int(k.sum()) for k in keeps)
            short = torch.tensor([float(kept < n_groups)], device=self.accelerator.device)
            # every process runs the same number of rounds (TRL gathers rewards inside each round)
            if len(batches) >= self.method.dynamic_sampling.max_rounds or self.accelerator.gather(short).sum() == 0:
                break
        picks, filled = choose_groups(keeps, n_groups)
        rows = [(b, grp * g + j) for b, grp in picks for j in range(g)]
        out = merge_rows(batches, rows, self._tokenizer.pad_token_id)
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        drawn = n_groups * len(batches)
        for name, value in [("rounds", len(batches)), ("dropped_groups", drawn - kept), ("filled_groups", filled),
                            ("kept_fraction", kept / drawn)]:
            self._metrics["train"][f"dynamic_sampling/{name}"].append(float(value))
        return out

    def _draw_prompts(self, n_groups: int) -> list[dict]:
        """n_groups fresh prompts from the training set, each repeated G times (TRL's generation-batch layout)."""
        idx = self._prompt_rng.sample(range(len(self.train_dataset)), n_groups)
        return [self.train_dataset[i] for i in idx for _ in range(self.num_generations)]

    # -- token shaping -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _shape_advantages(self, out: dict, mode: str) -> dict:
        mask = out["completion_mask"]
        dependency = None
        if self.shaper.needs_dependency:
            micro = self.args.per_device_train_batch_size
            logp_image = self._image_logprobs(out, micro)
            logp_blind = self.blind_view.fn(self.model, out, self.temperature, micro)
            dependency = k3(logp_image, logp_blind, mask)
            valid = mask.bool()
            self._metrics[mode]["dependency/mean"].append(dependency[valid].mean().item() if valid.any() else 0.0)
            self._metrics[mode]["dependency/max"].append(dependency[valid].max().item() if valid.any() else 0.0)
        result = self.shaper.fn(ShapingBatch(out["advantages"], mask, dependency), self.shaper_params)
        for name, value in result.stats.items():
            self._metrics[mode][name].append(value)
        out["advantages"] = result.token_advantages
        return out

    def _image_logprobs(self, out: dict, micro: int) -> torch.Tensor:
        """Log-probs of the sampled tokens under the current policy with the image (the rollout policy)."""
        if out.get("old_per_token_logps") is not None:
            return out["old_per_token_logps"]
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        extra = {k: out[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids") if k in out}
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, attention, out["completion_ids"].size(1), batch_size=micro,
            num_images=out.get("num_images"), **extra)
        return logps
