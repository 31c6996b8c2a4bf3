"""The one trainer: TRL's GRPOTrainer with token-level advantages from a registered shaper and optional auxiliary
loss terms.

Per generation step, without gradient (``generation_step``): roll out (with DAPO dynamic sampling if the method
asks), compute the blind log-probs of the sampled completions if the shaper or a loss term needs the blind view,
and hand the shaper's token advantages to TRL's loss (which accepts [B,T] advantages). The image-conditioned
log-probs S needs come from a pass that runs anyway where that is exact: TRL's old log-probs when it computes them
(off-policy micro-steps, vLLM), else, for per-response shapers, the loss forward itself (``before_loss``, detached:
on an aligned on-policy step it is the rollout policy, exactly what TRL itself uses as old log-probs). Only a
batch-level shaper (VPPO) on an aligned step pays an extra image-conditioned pass. Per micro-batch
(``after_loss``): TRL's loss, plus the method's loss terms, computed from the log-probs TRL's own forward produced
(captured, not recomputed). Every TRL-private touch point lives in pgpo/training/trl_bridge.py. Faults never reach the
optimizer: a NaN reward or NaN rollout log-prob takes its group's advantage to 0, a non-finite loss gives its
micro-batch a zero gradient (all counted under faults/). Resume loads checkpoint weights strictly. Methods differ
only by their YAML; nothing here reads a method's name.

Every shaper also gets the answer tokens and per-response seeds (``_attach_shaping_inputs``), and every method logs
where its credit went (pgpo/methods/token_credit.py): ``rollout_all/<reward>`` over every sampled rollout before the
dynamic-sampling filter, ``entropy/answer`` and ``entropy/non_answer`` from the loss forward, and
``credit/answer_share`` from the shaped token advantages.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import torch

from pgpo.methods.answer_span import answer_token_mask
from pgpo.methods.blind import BlindInputs
from pgpo.methods.components import resolve_components
from pgpo.config.schema import MethodConfig
from pgpo.methods.dependency import k3
from pgpo.training.blind_forward import blind_forward
from pgpo.training.dynamic_sampling import groups_with_signal, sample_until_full, zero_signal_advantages
from pgpo.training.engine_gap import NAMESPACE as GAP
from pgpo.training.engine_gap import logp_gap
from pgpo.methods.loss_terms import LossTermBatch
from pgpo.methods.registry import Entry
from pgpo.methods.shaping import ShapingBatch
from pgpo.records.stages import SAMPLES_FILE
from pgpo.training.samples import SampleLog
from pgpo.methods.token_credit import answer_share, entropy_split, response_seeds, reward_means
from pgpo.training.trl_bridge import TRLBridge  # refuses a TRL other than the pinned one
from pgpo.models.loading import hf_model
from pgpo.models.vision_tokens import mask_completions, misaligned_visual_rows, replace_vision_tokens, vision_tokens


class DynamicSamplingCapped(RuntimeError):
    """Dynamic sampling filled too many consecutive batches at its round cap (dynamic_sampling.max_capped_steps)."""


class PGPOTrainer(TRLBridge):
    """TRL's GRPOTrainer running one method's registered components (pgpo.methods.components.resolve_components)."""


    def __init__(self, *args, method: MethodConfig, samples=None, **kwargs):
        """`samples`: the recipe's RolloutSamplesConfig (rollouts logged to <output_dir>/samples.jsonl), or None."""
        super().__init__(*args, **kwargs)
        self.use_method(method)
        a = self.args  # one rollout serves this many optimizer steps (prompts_per_step / update_prompts)
        self.samples = SampleLog(Path(a.output_dir) / SAMPLES_FILE, samples.every if samples else 0,
                                 samples.rollouts if samples else 0,
                                 getattr(self.processing_class, "tokenizer", self.processing_class),
                                 self.accelerator.is_main_process,
                                 a.steps_per_generation * a.num_iterations // a.gradient_accumulation_steps)
        # suppressed at sampling (GRPOConfig.generation_kwargs); screened here in case one is sampled anyway
        self.vision_ids = sorted(vision_tokens(self.processing_class).values())

    def use_method(self, method: MethodConfig) -> None:
        """Run `method`'s components (shaper, loss terms, blind view) from now on. The recipe (GRPOConfig: loss
        type, clipping) stays the one the trainer was built with: a caller swapping methods on one model (the
        gradient diagnostic) checks that their loss settings agree."""
        self.method = method
        components = resolve_components(method, method.name or "method")
        self.shaper, self.shaper_params = components.shaper.entry, components.shaper.params
        self.loss_terms = [(term.entry, term.params) for term in components.loss_terms]
        view = components.blind_view
        self.blind_view, self.blind_params = (view.entry, view.params) if view else (None, None)

    def log_stats(self, mode: str, component: Entry, stats: dict[str, float]) -> None:
        """A component's statistics (names relative to it) logged under its namespace: ``<namespace>/<name>``."""
        for name, value in stats.items():
            self.log_metric(mode, f"{component.stats_namespace}/{name}", value)

    def generation_step(self, inputs):
        """Roll out (DAPO dynamic sampling when the method enables it), then shape the advantages."""
        training = self.model.training
        if training and self.method.dynamic_sampling.enabled:
            out = self._dynamic_sampling_rollout(inputs)
        else:
            out, _ = self._scored_rollout(inputs, "train" if training else "eval")
            out["rows"] = list(inputs)
        self._check_visual_alignment(out)
        if out.get("old_per_token_logps") is not None:  # else the loss forward scores the rollout (after_loss)
            self._log_engine_gap(out, out["old_per_token_logps"], "train" if training else "eval")
        return self._shape_advantages(out, "train" if training else "eval")

    def _log_engine_gap(self, batch: dict, trainer_logps: torch.Tensor, mode: str) -> None:
        """The rollout engine's log-probs against the trainer's on the same tokens (pgpo/training/engine_gap.py), where the
        engine reported them (vLLM rollouts)."""
        engine = batch.get("sampling_per_token_logps")
        if engine is not None:
            for name, value in logp_gap(engine, trainer_logps, batch["completion_mask"]).items():
                self.log_metric(mode, f"{GAP}/{name}", value)

    def _check_visual_alignment(self, out: dict) -> None:
        """The batch's image marks on its image tokens, per row (TRL #5785: a processor padding on the right
        misplaces them silently; build_trainer pads on the left). An error, not a repair: the rollout's own
        forward already ran on the batch."""
        if "mm_token_type_ids" not in out or "image_grid_thw" not in out:
            return
        config = hf_model(self.model).config
        image_processor = getattr(self.processing_class, "image_processor", None)
        problems = misaligned_visual_rows(
            out["prompt_ids"], out["mm_token_type_ids"], out["image_grid_thw"],
            out.get("num_images") or [1] * out["prompt_ids"].size(0), config.image_token_id,
            getattr(config, "video_token_id", None), getattr(image_processor, "merge_size", 2))
        if problems:
            side = getattr(getattr(self.processing_class, "tokenizer", None), "padding_side", "?")
            raise RuntimeError(
                f"step {self.state.global_step}: the rollout's multimodal token types are not on its image tokens "
                f"({len(problems)} row(s); {problems[0]}). TRL pads prompt_ids on the left; the processor's "
                f"tokenizer pads on the {side!r} (TRL #5785): set processor.tokenizer.padding_side = 'left'")

    # -- vision tokens sampled anyway (pgpo/models/vision_tokens.py): replaced before any forward, completion masked ------
    def screen_completions(self, completion_ids):
        """Every vision token in a sampled completion becomes the pad id before TRL's first forward (one image
        placeholder too many would crash it)."""
        tok = getattr(self.processing_class, "tokenizer", self.processing_class)
        # the pad id, unless a checkpoint pads with a vision token (then the end of sequence id)
        replacement = next(t for t in (self.pad_token_id, tok.eos_token_id) if t not in self.vision_ids)
        return replace_vision_tokens(completion_ids, self.vision_ids, replacement)

    def drop_screened(self, out, hits):
        """A completion that held a vision token is masked out of the loss (not all its tokens are the policy's
        samples any more), counted in faults/vision_token_completions and faults/vision_tokens (all processes).
        num_items_in_batch, TRL's all-process count of loss tokens, is recounted on every process."""
        mode = "train" if self.model.training else "eval"
        device = out["completion_mask"].device
        flagged = torch.tensor(hits, device=device) > 0
        out["completion_mask"] = mask_completions(out["completion_mask"], flagged)
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        counts = self.accelerator.gather(torch.tensor([[float(flagged.sum()), float(sum(hits))]], device=device))
        self.log_metric(mode, "faults/vision_token_completions", counts[:, 0].sum().item())
        self.log_metric(mode, "faults/vision_tokens", counts[:, 1].sum().item())
        if flagged.any():
            warnings.warn(f"step {self.state.global_step}: {int(flagged.sum())} completion(s) sampled a vision "
                          f"token ({sum(hits)} token(s)): replaced by padding and masked out of the loss",
                          stacklevel=2)
        return out

    def _scored_rollout(self, rows: list[dict], mode: str) -> tuple[dict, torch.Tensor]:
        """TRL's rollout, its groups without signal (rewards all equal: dynamic_sampling.groups_with_signal)
        given advantage exactly 0 instead of TRL's float32 rounding noise. Returns it and [B/G] has-signal flags."""
        out = self.rollout(rows)
        g = self.num_generations if mode == "train" else self.num_generations_eval
        out["rollout_rewards"] = out.pop("rewards")  # [B], split with the responses (the logged samples read it)
        keep = groups_with_signal(out["rollout_rewards"], g)
        out["advantages"] = zero_signal_advantages(out["advantages"], keep, g)
        return out, keep

    # -- DAPO dynamic sampling ---------------------------------------------------------------------------------
    def _dynamic_sampling_rollout(self, inputs):
        """One rollout batch by dynamic sampling (pgpo.training.dynamic_sampling.sample_until_full), its token
        count for the dapo normaliser, and the evidence logged under dynamic_sampling/."""
        n_groups = len(inputs) // self.num_generations
        device = self.accelerator.device

        def all_full(short: bool) -> bool:
            return self.accelerator.gather(torch.tensor([float(short)], device=device)).sum() == 0

        r = sample_until_full(inputs, n_groups, self.num_generations, self.method.dynamic_sampling.max_rounds,
                              lambda rows: self._scored_rollout(rows, "train"),
                              lambda round_: self._draw_prompts(n_groups, round_), all_full, self.pad_token_id)
        out = r.batch
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        # per-process evidence, logged as min/max over processes: rounds run, rounds needed, completion tokens
        mine = torch.tensor([[r.rounds, r.needed, out["completion_mask"].sum()]], dtype=torch.float32, device=device)
        every = self.accelerator.gather(mine)
        spread = [(f"{name}_{fn.__name__}", fn(every[:, i]).item()) for i, name in
                  enumerate(("rounds", "rounds_needed", "tokens")) for fn in (torch.min, torch.max)]
        capped = self._count_capped(r.filled, r.kept, r.drawn, n_groups)
        for name, value in [("rounds", r.rounds), ("dropped_groups", r.drawn - r.kept), ("filled_groups", r.filled),
                            ("kept_fraction", r.kept / r.drawn), ("processes", every.size(0)),
                            ("num_items_in_batch", out["num_items_in_batch"].item()), ("capped", capped),
                            ("capped_streak", self._capped_streak), *spread]:
            self.log_metric("train", f"dynamic_sampling/{name}", value)
        return out

    # consecutive rollout batches that reached max_rounds and were filled (any process); None until the first one
    # of this trainer object, which resumes it from the logged history (a resumed run continues the streak)
    _capped_streak: int | None = None

    def _count_capped(self, filled: int, kept: int, drawn: int, n_groups: int) -> float:
        """1.0 if some process had to fill its batch with zero-signal groups this step (the round cap), else 0;
        after dynamic_sampling.max_capped_steps such steps in a row (0: never) the run stops with an error.
        Every process takes the same decision (the count is gathered)."""
        filled_any = self.accelerator.gather(torch.tensor([float(filled)], device=self.accelerator.device)).max()
        if self._capped_streak is None:  # one rollout batch per logged step (update_prompts divides prompts_per_step)
            logged = [e["dynamic_sampling/capped_streak"] for e in self.state.log_history
                      if "dynamic_sampling/capped_streak" in e]
            self._capped_streak = int(logged[-1]) if logged else 0
        self._capped_streak = self._capped_streak + 1 if filled_any > 0 else 0
        limit = self.method.dynamic_sampling.max_capped_steps
        if filled:
            warnings.warn(f"step {self.state.global_step}: dynamic sampling reached max_rounds with {kept} of "
                          f"{n_groups} groups whose rewards differ: {filled} zero-advantage group(s) fill the batch "
                          f"({self._capped_streak} such step(s) in a row; limit {limit or 'none'})", stacklevel=2)
        if limit and self._capped_streak >= limit:
            raise DynamicSamplingCapped(
                f"dynamic sampling: {self._capped_streak} consecutive steps (the last: step "
                f"{self.state.global_step + 1}) reached max_rounds={self.method.dynamic_sampling.max_rounds} with "
                f"fewer than {n_groups} groups whose rewards differ ({kept} of {drawn} drawn on this process), so "
                f"their batches were filled with zero-advantage groups: the prompts are too easy or too hard for "
                f"this policy. Raise dynamic_sampling.max_rounds, or set dynamic_sampling.max_capped_steps=0 to "
                f"keep training on filled batches (counted in dynamic_sampling/filled_groups)")
        return float(filled_any > 0)

    def _draw_prompts(self, n_groups: int, round_: int) -> list[dict]:
        """n_groups fresh prompts from the training set, each repeated G times (TRL's generation-batch layout).
        Seeded by (run seed, optimizer step, process, round), not by a stateful generator: a resumed run draws
        the same refills as an uninterrupted one."""
        key = f"{self.args.seed}/{self.state.global_step}/{self.accelerator.process_index}/{round_}"
        idx = random.Random(key).sample(range(len(self.train_dataset)), n_groups)
        return [self.train_dataset[i] for i in idx for _ in range(self.num_generations)]

    # -- token shaping -------------------------------------------------------------------------------------------
    def _defer_to_loss(self, out: dict) -> bool:
        """Shape inside the loss: exact only when the loss forward runs the rollout policy (TRL computed no old
        log-probs: one update per generation, no vLLM) and the shaper looks at one response at a time."""
        return self.shaper.per_response and out.get("old_per_token_logps") is None

    @torch.no_grad()
    def _shape_advantages(self, out: dict, mode: str) -> dict:
        mask = out["completion_mask"]
        rows = out.pop("rows")
        self._attach_shaping_inputs(out)
        if mode == "train":
            self.samples.select(out, rows, self.state.global_step)
        if self.blind_view is None:
            self._neutralise_nonfinite(out, mask, mode, out.get("old_per_token_logps"),
                                       out.get("sampling_per_token_logps"))
            return self._apply_shaper(out, mask, None, mode)
        micro = self.args.per_device_train_batch_size

        def forward(**overrides):  # the rollout batch with some inputs replaced (e.g. blackened pixels)
            return self._image_logprobs({**out, **overrides}, micro, force=True)

        # masks of stochastic views are seeded by (run seed, prompt id, step): reruns and resumes draw the same
        view = BlindInputs(model=self.model, batch=out, rows=rows, group_size=self.num_generations,
                           step=self.state.global_step, seed=self.args.seed, temperature=self.temperature,
                           micro_batch=micro, forward=forward, blind_forward=blind_forward,
                           image_processor=getattr(self.processing_class, "image_processor", None))
        logp_blind, stats = self.blind_view.fn(view, self.blind_params)
        self.log_stats(mode, self.blind_view, stats)
        if self._defer_to_loss(out):
            self._neutralise_nonfinite(out, mask, mode, logp_blind)
            out["blind_logps"] = logp_blind.nan_to_num(0.0)
            return out  # sequence advantages + blind log-probs: before_loss shapes each micro-batch
        logp_image = self._image_logprobs(out, micro)
        self._neutralise_nonfinite(out, mask, mode, logp_image, logp_blind)
        logp_blind = logp_blind.nan_to_num(0.0)  # no NaN in S
        if any(entry.needs_blind_view for entry, _ in self.loss_terms):
            out["blind_logps"] = logp_blind
        dependency = self._dependency(logp_image.nan_to_num(0.0), logp_blind, mask, mode)
        return self._apply_shaper(out, mask, dependency, mode)

    def _dependency(self, logp_image, logp_blind, mask, mode: str) -> torch.Tensor:
        """S = k3(image, blind) [B,T] (clamped if the method says so), with its statistics logged."""
        dependency = k3(logp_image, logp_blind, mask)
        if self.method.blind_view.clamp_max > 0:
            dependency = dependency.clamp(max=self.method.blind_view.clamp_max)
        valid = mask.bool()
        self.log_metric(mode, "dependency/mean", dependency[valid].mean().item() if valid.any() else 0.0)
        self.log_metric(mode, "dependency/max", dependency[valid].max().item() if valid.any() else 0.0)
        return dependency

    def _attach_shaping_inputs(self, out: dict) -> None:
        """Per response, what every shaper may use besides its advantage: the answer tokens (pgpo.methods.answer_span) and
        a seed from (run seed, optimizer step, process, row). Both are [B] / [B,T] tensors of the rollout batch, so
        TRL shuffles and splits them with their responses: a micro-batch shaped in the loss sees the same."""
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        out["answer_mask"] = answer_token_mask(out["completion_ids"], out["completion_mask"], tokenizer)
        out["shaping_seeds"] = response_seeds(self.args.seed, self.state.global_step,
                                              self.accelerator.process_index, out["completion_ids"].size(0),
                                              device=out["completion_ids"].device)

    def _apply_shaper(self, out: dict, mask, dependency, mode: str) -> dict:
        batch = ShapingBatch(out["advantages"], mask, dependency if self.shaper.needs_blind_view else None,
                             gather=self.accelerator.gather, answer_mask=out.get("answer_mask"),
                             seeds=out.get("shaping_seeds"))
        result = self.shaper.fn(batch, self.shaper_params)
        self.log_stats(mode, self.shaper, result.stats)
        if mode == "train":
            self.samples.observe(out, out["advantages"], result.token_advantages, dependency)
        out["advantages"] = result.token_advantages
        if out.get("answer_mask") is not None:
            # where the shaped credit went: the same statistic for every method (shaped per batch or micro-batch)
            share = answer_share(result.token_advantages, out["answer_mask"], mask)
            if share is not None:
                self.log_metric(mode, "credit/answer_share", share)
        return out

    def before_loss(self, logps: torch.Tensor, inputs: dict) -> None:
        """The logged samples of this micro-batch learn their step (pgpo/training/samples.py). Deferred shaping of
        one micro-batch: S from the loss forward's log-probs (detached) and the blind
        log-probs of the generation step; TRL then reads the token advantages set here. A micro-batch waits for it
        when it carries what it needs and nothing shaped yet: blind log-probs beside sequence advantages [b]."""
        mode = "train" if self.model.training else "eval"
        if mode == "train":
            self.samples.stamp(inputs, self.state.global_step + 1)  # the step these responses are trained in
        if inputs["advantages"].dim() != 1 or "blind_logps" not in inputs:
            return
        with torch.no_grad():
            mask = inputs["completion_mask"]
            dependency = self._dependency(logps.detach().nan_to_num(0.0), inputs["blind_logps"], mask, mode)
            self._apply_shaper(inputs, mask, dependency, mode)

    def _neutralise_nonfinite(self, out: dict, mask: torch.Tensor, mode: str, *logps) -> None:
        """A completion whose rollout log-probs (any of `logps` present) are NaN/inf takes its whole group's
        advantage to 0 (each process holds whole groups), counted in faults/nonfinite_logp_groups. Where no
        rollout log-probs exist (on-policy grpo/dapo steps, deferred shaping), the loss-time guard in after_loss
        is the backstop."""
        valid = mask.bool()
        bad = torch.zeros(mask.size(0), dtype=torch.bool, device=mask.device)
        for lp in logps:
            if lp is not None:
                bad |= (~torch.isfinite(lp) & valid).any(dim=1)
        g = self.num_generations if mode == "train" else self.num_generations_eval
        groups = bad.view(-1, g).any(dim=1).repeat_interleave(g)
        self.log_metric(mode, "faults/nonfinite_logp_groups", float(groups.sum()) / g)
        if groups.any():
            warnings.warn(f"step {self.state.global_step}: {int(bad.sum())} completion(s) with non-finite rollout "
                          f"log-probs: {int(groups.sum()) // g} group(s) get no advantage", stacklevel=2)
            out["advantages"] = torch.where(groups, torch.zeros_like(out["advantages"]), out["advantages"])

    def _image_logprobs(self, out: dict, micro: int, force: bool = False) -> torch.Tensor:
        """Log-probs of the sampled tokens under the current policy with the batch's images (the rollout policy
        unless `out` overrides them, e.g. with blackened pixel values); TRL's own forward."""
        if out.get("old_per_token_logps") is not None and not force:
            return out["old_per_token_logps"]
        return self.policy_logprobs(out, micro)

    # -- the loss of one micro-batch (with gradient) ------------------------------------------------------------
    def after_loss(self, model, inputs, loss, logps, entropies=None):
        """TRL's loss (+ the method's loss terms, in name order, logged as loss_terms/<name>); a non-finite loss
        never reaches the optimizer. Logs the forward's mean entropy on answer and on other tokens."""
        mode = "train" if self.model.training else "eval"
        if entropies is not None and inputs.get("answer_mask") is not None:
            for name, value in zip(("answer", "non_answer"),
                                   entropy_split(entropies, inputs["answer_mask"], inputs["completion_mask"])):
                if value is not None:
                    self.log_metric(mode, f"entropy/{name}", value)
        if inputs.get("old_per_token_logps") is None:
            # TRL computed no old log-probs: one optimizer step per generation, so every loss forward of this
            # generation runs the weights the rollout was sampled with (its gap is comparable)
            self._log_engine_gap(inputs, logps, mode)
        mask = inputs["completion_mask"].bool()
        bad_rows = (~torch.isfinite(logps) & mask).any(dim=1)
        self.log_metric(mode, "faults/nonfinite_logp_completions", float(bad_rows.sum()))
        if self.loss_terms:
            batch = LossTermBatch(logps, inputs["completion_mask"], inputs.get("blind_logps"),
                                  self.update_tokens(inputs, mode))
            for entry, params in self.loss_terms:
                term = entry.fn(batch, params)
                loss = loss + term.loss
                self.log_metric(mode, f"loss_terms/{entry.name}", term.value)
        finite = bool(torch.isfinite(loss).all())
        self.log_metric(mode, "faults/skipped_microbatch_fraction", 0.0 if finite else 1.0)
        if finite:
            return loss
        # NaN/inf (e.g. one completion's log-probs overflowed): this micro-batch gives a zero gradient instead of
        # poisoning the weights; the NaN graph is dropped, not back-propagated (0 x NaN would still be NaN)
        warnings.warn(f"step {self.state.global_step}: non-finite loss ({loss.item()}) with {int(bad_rows.sum())} "
                      "completion(s) of non-finite log-probs: micro-batch skipped (zero gradient)", stacklevel=2)
        return sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)

    def rollout_rewards(self, rewards, names, mode):
        """rollout_all/<reward>: each reward function's mean over every sampled rollout of every process, all
        dynamic-sampling rounds included (one entry per round; rounds are equal in size, so the step's mean is the
        mean over all of them), before the filter keeps the groups with signal."""
        for name, value in reward_means(rewards, names).items():
            self.log_metric(mode, f"rollout_all/{name}", value)
        # each reward's share of the weighted total over these rollouts (pgpo.rewards.registry: the recipe's weights)
        weights = torch.as_tensor(self.reward_weights, dtype=rewards.dtype, device=rewards.device)
        weighted = torch.nanmean(rewards, dim=0) * weights
        total = float(weighted.nansum())
        for name, part in zip(names, weighted.tolist()):
            self.log_metric(mode, f"rewards/{name}/share", part / total if total else 0.0)

    # -- faults: a NaN reward neutralises its group --------------------------------------------------------------
    def check_rewards(self, rewards, mode):
        """TRL's rewards (gathered over processes: [global B, reward funcs]). pgpo's reward functions always
        return a number, so a NaN (or None) is a fault: it is counted and logged, and every completion of its
        group is marked unscorable, which TRL turns into advantage 0 (no learning signal, no crash)."""
        g = self.num_generations if mode == "train" else self.num_generations_eval
        errors = getattr(self, "reward_errors", {})  # completions each reward broke on (registry), this process
        labels = [n.removesuffix("_reward") for n in self.reward_func_names]
        counts = self.accelerator.gather(torch.tensor([[float(errors.get(n, 0)) for n in labels]],
                                                      device=rewards.device)).sum(dim=0)  # every process's
        for name, count in zip(labels, counts.tolist()):
            self.log_metric(mode, f"faults/reward_errors/{name}", count)
        errors.clear()
        bad = torch.isnan(rewards).any(dim=1)
        groups = bad.view(-1, g).any(dim=1)
        self.log_metric(mode, "faults/nan_reward_completions", float(bad.sum()))
        self.log_metric(mode, "faults/neutralised_groups", float(groups.sum()))
        if groups.any():
            warnings.warn(f"step {self.state.global_step}: {int(bad.sum())} completion(s) with a NaN reward: "
                          f"{int(groups.sum())} group(s) get no advantage", stacklevel=2)
            rewards = rewards.clone()
            rewards[groups.repeat_interleave(g)] = torch.nan
        return rewards

    # -- the run's model card: public Trainer API, so here, not in the bridge (there it closed an import circle:
    # trl_bridge -> model_card -> config -> components -> blind -> dependency -> trl_bridge) -------------------
    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """pgpo's card (base model, method and its parameters, recipe and data hashes, steps; pgpo/results/model_card.py)
        instead of TRL's, which names a local base model "None". TRL calls this at every checkpoint save."""
        if self.is_world_process_zero():
            from pgpo.results.model_card import write_run_cards

            write_run_cards(self.args.output_dir, step=self.state.global_step)
