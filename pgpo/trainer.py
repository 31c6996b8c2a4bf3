"""The one trainer: TRL's GRPOTrainer with token-level advantages from a registered shaper and optional auxiliary
loss terms.

Per generation step, without gradient (``_generate_and_score_completions``): roll out (with DAPO dynamic sampling if
the method asks), compute the image-conditioned and blind log-probs of the sampled completions if the shaper or a
loss term needs the blind view, and hand the shaper's token advantages to TRL's loss (which accepts [B,T]
advantages). Per micro-batch (``_compute_loss``), only if the method has loss terms: TRL's loss, plus the terms,
computed from the log-probs TRL's own forward produced (captured, not recomputed). Faults never reach the
optimizer: a NaN reward or NaN rollout log-prob takes its group's advantage to 0, a non-finite loss gives its
micro-batch a zero gradient (all counted under faults/). Resume loads checkpoint weights strictly. Methods differ
only by their YAML; nothing here reads a method's name.
"""

from __future__ import annotations

import random
import warnings

import torch
from trl import GRPOTrainer

from pgpo.blind import BLIND_VIEWS, BlindInputs
from pgpo.config import MethodConfig
from pgpo.dependency import k3
from pgpo.dynamic_sampling import choose_groups, groups_with_signal, merge_rows
from pgpo.loss_terms import LOSS_TERMS, LossTermBatch
from pgpo.shaping import SHAPERS, ShapingBatch


class PGPOTrainer(GRPOTrainer):
    _captured: list | None = None  # log-probs of TRL's loss forward, collected while _compute_loss runs

    def __init__(self, *args, method: MethodConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.shaper = SHAPERS.get(method.shaper.name)
        self.shaper_params = self.shaper.make_params(method.shaper.params)
        self.loss_terms = [(LOSS_TERMS.get(name), LOSS_TERMS.get(name).make_params(params))
                           for name, params in sorted(method.loss_terms.items())]
        self.blind_view = BLIND_VIEWS.get(method.blind_view.name) if method.needs_blind_view() else None
        self.blind_params = self.blind_view.make_params(method.blind_view.params) if self.blind_view else None

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        if training and self.method.dynamic_sampling.enabled:
            out = self._dynamic_sampling_rollout(inputs)
        else:
            out = super()._generate_and_score_completions(inputs)
            out["rows"] = list(inputs)
        return self._shape_advantages(out, "train" if training else "eval")

    # -- DAPO dynamic sampling ---------------------------------------------------------------------------------
    def _dynamic_sampling_rollout(self, inputs):
        g = self.num_generations
        n_groups = len(inputs) // g
        batches, keeps, needed = [], [], 0  # needed: the round this process alone would have stopped at
        while True:
            rows = inputs if not batches else self._draw_prompts(n_groups, len(batches))
            batch = super()._generate_and_score_completions(rows)
            batch["rows"] = list(rows)
            batches.append(batch)
            keeps.append(groups_with_signal(batch["advantages"], g))
            kept = sum(int(k.sum()) for k in keeps)
            needed = needed or (len(batches) if kept >= n_groups else 0)
            short = torch.tensor([float(kept < n_groups)], device=self.accelerator.device)
            # every process runs the same number of rounds (TRL gathers rewards inside each round)
            if len(batches) >= self.method.dynamic_sampling.max_rounds or self.accelerator.gather(short).sum() == 0:
                break
        picks, filled = choose_groups(keeps, n_groups)
        rows = [(b, grp * g + j) for b, grp in picks for j in range(g)]
        out = merge_rows(batches, rows, self._tokenizer.pad_token_id)
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        drawn = n_groups * len(batches)
        # per-process evidence, logged as min/max over processes: rounds run, rounds needed, completion tokens
        mine = torch.tensor([[len(batches), needed or len(batches), out["completion_mask"].sum()]],
                            dtype=torch.float32, device=self.accelerator.device)
        every = self.accelerator.gather(mine)
        spread = [(f"{name}_{fn.__name__}", fn(every[:, i]).item()) for i, name in
                  enumerate(("rounds", "rounds_needed", "tokens")) for fn in (torch.min, torch.max)]
        for name, value in [("rounds", len(batches)), ("dropped_groups", drawn - kept), ("filled_groups", filled),
                            ("kept_fraction", kept / drawn), ("processes", every.size(0)),
                            ("num_items_in_batch", out["num_items_in_batch"].item()), *spread]:
            self._metrics["train"][f"dynamic_sampling/{name}"].append(float(value))
        return out

    def _draw_prompts(self, n_groups: int, round_: int) -> list[dict]:
        """n_groups fresh prompts from the training set, each repeated G times (TRL's generation-batch layout).
        Seeded by (run seed, optimizer step, process, round), not by a stateful generator: a resumed run draws
        the same refills as an uninterrupted one."""
        key = f"{self.args.seed}/{self.state.global_step}/{self.accelerator.process_index}/{round_}"
        idx = random.Random(key).sample(range(len(self.train_dataset)), n_groups)
        return [self.train_dataset[i] for i in idx for _ in range(self.num_generations)]

    # -- resume ----------------------------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume with the checkpoint's weights, strictly. transformers 5 saves the hub's key names
        (`model.layers.*`, `visual.*`) and Trainer's own resume loads them without the model's key conversion
        (non-strict: 69 missing keys, i.e. the initial weights silently kept). from_pretrained applies the
        conversion; strict loading makes any remaining mismatch an error. DeepSpeed resumes its own way."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model if model is not None else self.model
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
        model.load_state_dict(saved.state_dict(), strict=True)
        del saved

    # -- token shaping -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _shape_advantages(self, out: dict, mode: str) -> dict:
        mask = out["completion_mask"]
        rows = out.pop("rows")
        dependency = None
        if self.blind_view is not None:
            micro = self.args.per_device_train_batch_size
            logp_image = self._image_logprobs(out, micro)

            def forward(**overrides):  # the rollout batch with some inputs replaced (e.g. blackened pixels)
                return self._image_logprobs({**out, **overrides}, micro, force=True)

            # masks of stochastic views are seeded by (run seed, prompt id, step): reruns and resumes draw the same
            view = BlindInputs(self.model, out, rows, self.num_generations, self.state.global_step, self.args.seed,
                               self.temperature, micro, forward, getattr(self.processing_class, "image_processor",
                                                                         None))
            logp_blind = self.blind_view.fn(view, self.blind_params)
            self._neutralise_nonfinite(out, mask, mode, logp_image, logp_blind)
            logp_image, logp_blind = logp_image.nan_to_num(0.0), logp_blind.nan_to_num(0.0)  # no NaN in S
            dependency = k3(logp_image, logp_blind, mask)
            if self.method.blind_view.clamp_max > 0:
                dependency = dependency.clamp(max=self.method.blind_view.clamp_max)
            valid = mask.bool()
            self._metrics[mode]["dependency/mean"].append(dependency[valid].mean().item() if valid.any() else 0.0)
            self._metrics[mode]["dependency/max"].append(dependency[valid].max().item() if valid.any() else 0.0)
            for name, value in view.stats.items():
                self._metrics[mode][name].append(value)
            if any(entry.needs_dependency for entry, _ in self.loss_terms):
                out["blind_logps"] = logp_blind
        else:
            self._neutralise_nonfinite(out, mask, mode, out.get("old_per_token_logps"),
                                       out.get("sampling_per_token_logps"))
        batch = ShapingBatch(out["advantages"], mask, dependency if self.shaper.needs_dependency else None,
                             gather=self.accelerator.gather)
        result = self.shaper.fn(batch, self.shaper_params)
        for name, value in result.stats.items():
            self._metrics[mode][name].append(value)
        out["advantages"] = result.token_advantages
        return out

    def _neutralise_nonfinite(self, out: dict, mask: torch.Tensor, mode: str, *logps) -> None:
        """A completion whose rollout log-probs (any of `logps` present) are NaN/inf takes its whole group's
        advantage to 0 (each process holds whole groups), counted in faults/nonfinite_logp_groups. Where no
        rollout log-probs exist (on-policy grpo/dapo steps), the loss-time guard in _compute_loss is the backstop."""
        valid = mask.bool()
        bad = torch.zeros(mask.size(0), dtype=torch.bool, device=mask.device)
        for lp in logps:
            if lp is not None:
                bad |= (~torch.isfinite(lp) & valid).any(dim=1)
        g = self.num_generations if mode == "train" else self.num_generations_eval
        groups = bad.view(-1, g).any(dim=1).repeat_interleave(g)
        self._metrics[mode]["faults/nonfinite_logp_groups"].append(float(groups.sum()) / g)
        if groups.any():
            warnings.warn(f"step {self.state.global_step}: {int(bad.sum())} completion(s) with non-finite rollout "
                          f"log-probs: {int(groups.sum()) // g} group(s) get no advantage", stacklevel=2)
            out["advantages"] = torch.where(groups, torch.zeros_like(out["advantages"]), out["advantages"])

    def _image_logprobs(self, out: dict, micro: int, force: bool = False) -> torch.Tensor:
        """Log-probs of the sampled tokens under the current policy with the batch's images (the rollout policy
        unless `out` overrides them, e.g. with blackened pixel values); TRL's own forward."""
        if out.get("old_per_token_logps") is not None and not force:
            return out["old_per_token_logps"]
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        extra = {k: out[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids") if k in out}
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, attention, out["completion_ids"].size(1), batch_size=micro,
            num_images=out.get("num_images"), **extra)
        return logps

    # -- auxiliary loss terms (per micro-batch, with gradient) -------------------------------------------------
    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._captured is not None:
            self._captured.append(result[0])
        return result

    def _compute_loss(self, model, inputs):
        """TRL's loss (+ the method's loss terms); a non-finite loss never reaches the optimizer."""
        mode = "train" if self.model.training else "eval"
        self._captured = []
        try:
            loss = super()._compute_loss(model, inputs)
            logps = self._captured[0]  # TRL's loss forward: log pi_theta(o_t | image), with gradient
        finally:
            self._captured = None
        mask = inputs["completion_mask"].bool()
        bad_rows = (~torch.isfinite(logps) & mask).any(dim=1)
        self._metrics[mode]["faults/nonfinite_logp_completions"].append(float(bad_rows.sum()))
        if self.loss_terms:
            batch = LossTermBatch(logps, inputs["completion_mask"], inputs.get("blind_logps"),
                                  self._update_tokens(inputs, mode))
            for entry, params in self.loss_terms:
                term = entry.fn(batch, params)
                loss = loss + term.loss
                self._metrics[mode][f"loss_terms/{entry.name}"].append(term.value)
        finite = bool(torch.isfinite(loss).all())
        self._metrics[mode]["faults/skipped_microbatch_fraction"].append(0.0 if finite else 1.0)
        if finite:
            return loss
        # NaN/inf (e.g. one completion's log-probs overflowed): this micro-batch gives a zero gradient instead of
        # poisoning the weights; the NaN graph is dropped, not back-propagated (0 x NaN would still be NaN)
        warnings.warn(f"step {self.state.global_step}: non-finite loss ({loss.item()}) with {int(bad_rows.sum())} "
                      "completion(s) of non-finite log-probs: micro-batch skipped (zero gradient)", stacklevel=2)
        return sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)

    # -- faults: a NaN reward neutralises its group --------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (gathered over processes: [global B, reward funcs]). pgpo's reward functions always
        return a number, so a NaN (or None) is a fault: it is counted and logged, and every completion of its
        group is marked unscorable, which TRL turns into advantage 0 (no learning signal, no crash)."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        g = self.num_generations if mode == "train" else self.num_generations_eval
        bad = torch.isnan(rewards).any(dim=1)
        groups = bad.view(-1, g).any(dim=1)
        self._metrics[mode]["faults/nan_reward_completions"].append(float(bad.sum()))
        self._metrics[mode]["faults/neutralised_groups"].append(float(groups.sum()))
        if groups.any():
            warnings.warn(f"step {self.state.global_step}: {int(bad.sum())} completion(s) with a NaN reward: "
                          f"{int(groups.sum())} group(s) get no advantage", stacklevel=2)
            rewards = rewards.clone()
            rewards[groups.repeat_interleave(g)] = torch.nan
        return rewards

    def _update_tokens(self, inputs: dict, mode: str) -> torch.Tensor:
        """Completion tokens of one update batch on this process (TRL's own normaliser of the dapo loss)."""
        tokens = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if mode == "train":
            tokens = tokens * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return tokens
