"""Every touch of TRL's private API the trainer makes, for one pinned TRL version (contract tests:
tests/training/test_trl_contract.py); the pin and TRL's chunked LM head, which need no trainer, are in pgpo/training/trl_head.py.

GRPOTrainer has no public extension points for what the methods need, so `TRLBridge` overrides its private
methods and reads three private attributes, and turns them into hooks with plain names that PGPOTrainer
implements (plus one fix of TRL's colocated vLLM prompts, explained below the table):

| TRL private                                   | what we rely on                                               | hook        |
|-----------------------------------------------|---------------------------------------------------------------|-------------|
| `_generate_and_score_completions(inputs)`     | returns the rollout dict (ids, masks, [B] advantages, ...)    | generation_step / rollout |
| `_generate(prompts)`                          | called once per rollout, before any forward; its 2nd item is  | screen_completions / |
|                                               | this process's completion ids (lists), in rollout-row order   | drop_screened |
| `_calculate_rewards(...)`                     | returns [global B, reward funcs]; NaN = unscorable -> adv 0;  | check_rewards, |
|                                               | TRL sums them with `reward_weights` (sum_then_normalize) and  | out["rewards"] |
|                                               | keeps this process's rows `process_index * B` onwards         |             |
| `_compute_loss(model, inputs)`                | calls `_get_per_token_logps_and_entropies` exactly once and   | before_loss / after_loss |
|                                               | reads `inputs["advantages"]` AFTER that forward               |             |
| `_get_per_token_logps_and_entropies(...)`     | [B,T] log-probs of the sampled tokens (its fused LM head);    | policy_logprobs |
|                                               | in the loss, [B,T] entropies second (compute_entropy=True)    | after_loss  |
| `reward_func_names`                           | one name per reward column, in _calculate_rewards' order      | rollout_rewards |
| `_load_from_checkpoint(path, model)`          | transformers' resume entry point                              | (fixed here) |
| `_load_optimizer_and_scheduler(path)`         | transformers' optimizer resume (its cpu:0 map fails)          | (fixed here) |
| `trl.generation.vllm_generation.LLM`          | the engine class TRL instantiates in colocate mode            | vllm_engine |
| `vllm_generation.generate(prompts, images,`   | colocate: sends `prompts` as `prompt_token_ids` with the      | (fixed here,|
|  `num_generations, profiler)` (instance attr) | images; the trainer ignores the prompt ids it returns         | see below)  |
| the fused LM head (`fused_lm_head=True`, its  | TRL's chunked log-prob forward and ChunkedLogProbFunction     | fused_head, |
| `temperature` closure, `_use_triton`, chunk)  | (blind log-probs computed exactly like the policy's)          | chunked_logprobs |
| `_metrics[mode][name]`                        | lists averaged into each logged step                          | log_metric  |
| `_tokenizer`                                  | the processor's tokenizer (pad id for merges)                 | pad_token_id |
| dapo normaliser                               | num_items_in_batch / processes x accumulation / steps_per_gen | update_tokens |
| `trl.trainer.utils`: `pad`, `nanstd`,         | TRL's own tensor bookkeeping of the rollout dict (dynamic      | re-exported |
|  `split_tensor_dict`, `(un)split_pixel_values_by_grid` | sampling, the gradient diagnostic, the known-bugs check) |      |

Anything else the trainer uses is public Trainer/GRPOTrainer API (state, args, accelerator, num_generations).

The colocate fix (TRL #6294 / #6401, unfixed in 1.16): TRL tokenizes prompts with the processor, so each image is
already a run of N `<|image_pad|>` tokens, and hands those ids to vLLM together with the images; vLLM 0.31 expands
the pads again (16 pads became 31 on the tiny model). Nothing errors, but the engine samples from a different
prompt than the trainer scores (rollout log-probs off by 1.46 nats on the warm tiny model). `send_one_pad_per_image`
wraps the trainer's VLLMGeneration so the engine receives one pad per image (vLLM expands it from the image it
processes itself) while TRL keeps its expanded ids for the loss. Server mode is left alone: TRL places the server's
image features on the runs of pads in the expanded ids, which is right there.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable

# the pin check first: a wrong TRL fails with its message, not deep inside TRL's trainer
from pgpo.training.trl_head import ALLOW_ENV, TRL_PIN, check_trl_version  # noqa: F401, I001
from pgpo.training.trl_head import chunked_logprobs, fused_head, fused_temperature  # noqa: F401  (the bridge's API too)

import torch
from trl import GRPOTrainer
from trl.trainer.utils import (  # noqa: F401  (re-exported: the only import path of these helpers)
    nanstd,
    pad,
    split_pixel_values_by_grid,
    split_tensor_dict,
    unsplit_pixel_values_by_grid,
)


def _load_adapter_strictly(model, checkpoint: str) -> None:
    """Load a checkpoint's adapter_model.safetensors into the PEFT-wrapped policy, every adapter tensor of the
    model set and nothing left over (PEFT's own loader is non-strict: the base weights count as missing)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(os.path.join(checkpoint, "adapter_model.safetensors"))
    expected = set(get_peft_model_state_dict(model))
    if set(saved) != expected:
        raise RuntimeError(f"{checkpoint}: adapter tensors differ from the model's: missing "
                           f"{sorted(expected - set(saved))[:3]}, unexpected {sorted(set(saved) - expected)[:3]}")
    result = set_peft_model_state_dict(model, saved)
    if result.unexpected_keys:
        raise RuntimeError(f"{checkpoint}: adapter tensors not loaded: {result.unexpected_keys[:3]}")


@contextlib.contextmanager
def vllm_engine_arguments(extra: dict):
    """While TRL builds its colocated engine, `vllm.LLM` (as TRL's vllm_generation module names it) receives
    `extra` too. TRL 1.16 calls `LLM(model=..., ...)` in VLLMGeneration._init_vllm and exposes no way to pass
    engine arguments such as the image processor's pixel budget."""
    import trl.generation.vllm_generation as generation

    original = getattr(generation, "LLM", None)  # absent without vLLM: nothing to do
    if not extra or original is None:
        yield
        return
    generation.LLM = functools.partial(original, **extra)
    try:
        yield
    finally:
        generation.LLM = original


def one_pad_per_image(ids: list[int], image_token_id: int) -> list[int]:
    """`ids` with every run of `image_token_id` collapsed to one token (a processor-expanded image placeholder
    back to the single pad a chat template writes per image); every other token unchanged, in order."""
    return [t for i, t in enumerate(ids) if t != image_token_id or i == 0 or ids[i - 1] != image_token_id]


def send_one_pad_per_image(generation) -> bool:
    """Make TRL's colocated VLLMGeneration hand vLLM one image pad per image (see the module docstring). Returns
    whether it was installed: only in colocate mode and with a processor that has an image token."""
    image_token_id = getattr(generation.processing_class, "image_token_id", None)
    if generation.mode != "colocate" or image_token_id is None:
        return False
    trl_generate = generation.generate

    @functools.wraps(trl_generate)
    def generate(prompts, images, num_generations, profiler=None):
        per_prompt = images if images is not None else [None] * len(prompts)
        sent = [one_pad_per_image(list(ids), image_token_id) if imgs else ids
                for ids, imgs in zip(prompts, per_prompt, strict=True)]
        _, completion_ids, logprobs, logprob_token_ids = trl_generate(sent, images, num_generations, profiler)
        # TRL's own prompt ids back (vLLM reports its re-expanded ones; GRPOTrainer 1.16 discards them anyway)
        return prompts, completion_ids, logprobs, logprob_token_ids

    generation.generate = generate
    return True


# While _compute_loss runs (and only then), the function TRL's loss forward hands its [b,T] log-probs and entropies
# to. A context variable, set and reset by _compute_loss itself: no trainer attribute carries it between calls, and
# a forward run outside the loss (policy_logprobs, TRL's old log-probs) sees None.
LossForwardObserver = Callable[[torch.Tensor, "torch.Tensor | None"], None]
_LOSS_FORWARD: contextvars.ContextVar[LossForwardObserver | None] = contextvars.ContextVar(
    "pgpo_loss_forward", default=None)
# While rollout runs, where TRL's private steps report to it: "hits" (per-completion counts of
# screen_completions, from _generate) and "rewards" ([global B, funcs], from _calculate_rewards); None outside.
_ROLLOUT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("pgpo_rollout", default=None)


class TRLBridge(GRPOTrainer):
    """GRPOTrainer with its private methods turned into hooks. Subclasses implement generation_step,
    check_rewards, before_loss and after_loss; they call rollout, policy_logprobs, log_metric, pad_token_id and
    update_tokens, and never a TRL private name. Each override below names the TRL behaviour it relies on (the
    table in this module's docstring; tests/training/test_trl_contract.py checks them on the pinned TRL)."""

    def __init__(self, *args, vllm_engine: dict | None = None, **kwargs):
        """`vllm_engine`: extra arguments for the colocated vLLM engine TRL builds (e.g. mm_processor_kwargs with
        the recipe's pixel budget, which TRL does not pass on)."""
        with vllm_engine_arguments(vllm_engine or {}):
            super().__init__(*args, **kwargs)
        if self.use_vllm:
            send_one_pad_per_image(self.vllm_generation)

    # -- generation ---------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        """TRL calls this once per generation batch (steps_per_generation micro-steps share it) and splits the
        returned dict into micro-batches for _compute_loss: generation_step may change it as long as it keeps
        TRL's keys, shapes and layout (groups of G contiguous rows)."""
        return self.generation_step(inputs)

    def rollout(self, rows: list[dict]) -> dict:
        """TRL's rollout of `rows` (G copies per prompt): sampling, rewards, [B] group-relative advantages, plus
        ``out["rewards"]``: [B] the rewards those advantages were computed from (this process's rows, weighted as
        TRL weights them, NaN = unscorable). The completions screen_completions changed go to drop_screened."""
        record: dict[str, list] = {"hits": [], "rewards": []}
        token = _ROLLOUT.set(record)
        try:
            out = super()._generate_and_score_completions(rows)
        finally:
            _ROLLOUT.reset(token)
        if len(record["hits"]) != 1 or len(record["rewards"]) != 1:
            raise RuntimeError(f"TRL's rollout called _generate {len(record['hits'])} and _calculate_rewards "
                               f"{len(record['rewards'])} times (expected 1 each): the TRL contract of "
                               f"pgpo/training/trl_bridge.py is broken (trl=={TRL_PIN} expected)")
        out["rewards"] = self._weighted_rewards(record["rewards"][0], len(rows))
        self.rollout_rewards(record["rewards"][0], list(self.reward_func_names),
                             "train" if self.model.training else "eval")
        return self.drop_screened(out, record["hits"][0])

    def rollout_rewards(self, rewards: torch.Tensor, names: list[str], mode: str) -> None:
        """Hook: every rollout's rewards, per function ([global B, functions], NaN = unscorable, columns named by
        `names`), once per rollout call: before any filter such as dynamic sampling's."""

    def _weighted_rewards(self, rewards: torch.Tensor, local: int) -> torch.Tensor:
        """[global B, funcs] -> [local] this process's rows, summed with TRL's reward_weights exactly as TRL's
        sum_then_normalize does before its group mean (NaN where every function is NaN: unscorable)."""
        if self.multi_objective_aggregation != "sum_then_normalize":  # pgpo/training/grpo_args.py fixes it
            raise NotImplementedError(f"rollout rewards under {self.multi_objective_aggregation!r}")
        total = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards).all(dim=1)] = torch.nan
        start = self.accelerator.process_index * local
        return total[start:start + local]

    def _generate(self, prompts):
        """TRL 1.16 samples here and returns (prompt_ids, completion_ids, ...) with completion_ids a list of
        this process's token-id lists in rollout-row order; it decodes the texts for the rewards before returning
        and runs no forward on them until _generate_and_score_completions pads them. screen_completions may
        replace tokens (same lengths) before that first forward."""
        result = list(super()._generate(prompts))
        result[1], hits = self.screen_completions(result[1])
        record = _ROLLOUT.get()
        if record is not None:
            record["hits"].append(hits)
        return tuple(result)

    def screen_completions(self, completion_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
        """Hook: sampled completions (token-id lists) before any forward sees them, and per completion how many
        tokens were replaced (same lengths); the counts reach drop_screened."""
        return completion_ids, [0] * len(completion_ids)

    def drop_screened(self, out: dict, hits: list[int]) -> dict:
        """Hook: the rollout dict of a rollout whose completions had `hits` tokens replaced each ([B] ints)."""
        return out

    def generation_step(self, inputs: list[dict]) -> dict:
        """Hook: the rollout dict of one generation batch (`inputs`: dataset rows, G copies per prompt); token
        advantages [B,T] may replace TRL's [B] ones (TRL's loss broadcasts either)."""
        return self.rollout(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL returns the rewards gathered over processes ([global B, reward funcs]) before it normalises them
        into advantages, and turns a NaN row into advantage 0: check_rewards may mark rows NaN."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        rewards = self.check_rewards(rewards, "train" if self.model.training else "eval")
        record = _ROLLOUT.get()
        if record is not None:
            record["rewards"].append(rewards)
        return rewards

    def check_rewards(self, rewards: torch.Tensor, mode: str) -> torch.Tensor:
        """Hook: the rewards TRL turns into advantages (NaN = unscorable: advantage 0)."""
        return rewards

    # -- log-probs ---------------------------------------------------------------------------------------------
    def policy_logprobs(self, batch: dict, micro: int, **overrides) -> torch.Tensor:
        """[B,T] log-probs of the batch's completion tokens under the current policy, through TRL's own forward
        (its fused LM head, the batch's images unless `overrides` replaces inputs such as pixel_values)."""
        batch = {**batch, **overrides}
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        extra = {k: batch[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids") if k in batch}
        # TRL's method itself, not our capturing override: a generation-time pass is never the loss forward
        logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            self, self.model, ids, attention, batch["completion_ids"].size(1), batch_size=micro,
            num_images=batch.get("num_images"), **extra)
        return logps

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        """TRL's forward ([b,T] log-probs first in its result); inside _compute_loss its log-probs go to the loss
        forward's observer (TRL 1.16 runs this exactly once per _compute_loss, before it reads the advantages)."""
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        observe = _LOSS_FORWARD.get()
        if observe is not None:
            observe(result[0], result[1])
        return result

    # -- loss ---------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        """TRL's loss of one micro-batch, with before_loss seeing its forward's log-probs before TRL reads
        ``inputs["advantages"]``, and after_loss receiving the loss and those same log-probs (no second pass)."""
        captured, entropies = [], []

        def observe(logps: torch.Tensor, entropy: torch.Tensor | None) -> None:
            captured.append(logps)
            entropies.append(entropy)
            if len(captured) == 1:
                # TRL reads inputs["advantages"] after this forward: a hook may set token advantages from it
                self.before_loss(logps, inputs)

        token = _LOSS_FORWARD.set(observe)
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            _LOSS_FORWARD.reset(token)
        if len(captured) != 1:
            raise RuntimeError(f"TRL's _compute_loss ran {len(captured)} log-prob forwards (expected 1): "
                               f"the TRL contract of pgpo/training/trl_bridge.py is broken (trl=={TRL_PIN} expected)")
        return self.after_loss(model, inputs, loss, captured[0], entropies[0])

    def before_loss(self, logps: torch.Tensor, inputs: dict) -> None:
        """Hook: the loss forward's [b,T] log-probs (with gradient) before TRL computes its loss; token
        advantages set in ``inputs["advantages"]`` here are the ones TRL's loss uses."""

    def after_loss(self, model, inputs: dict, loss: torch.Tensor, logps: torch.Tensor,
                   entropies: torch.Tensor | None = None) -> torch.Tensor:
        """Hook: the micro-batch's loss to back-propagate, from TRL's and the forward's log-probs (with gradient);
        `entropies` [b,T]: the policy's per-token entropies from that same forward (TRL's, at its temperature)."""
        return loss

    def update_tokens(self, inputs: dict, mode: str) -> torch.Tensor:
        """Completion tokens of one update batch on this process: TRL 1.16's normaliser of the dapo loss
        (num_items_in_batch is the all-process count of the generation batch)."""
        tokens = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if mode == "train":
            tokens = tokens * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return tokens

    # -- bookkeeping --------------------------------------------------------------------------------------------
    def log_metric(self, mode: str, name: str, value: float) -> None:
        """Append to TRL's per-step metric lists (averaged over the step when logged)."""
        self._metrics[mode][name].append(float(value))

    @property
    def pad_token_id(self) -> int:
        """The tokenizer's pad id (TRL's private `_tokenizer`: the processor's tokenizer)."""
        return self._tokenizer.pad_token_id

    # -- resume -------------------------------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume with the checkpoint's weights, strictly. transformers 5 saves the hub's key names
        (`model.layers.*`, `visual.*`) and Trainer's own resume loads them without the model's key conversion
        (non-strict: 69 missing keys, i.e. the initial weights silently kept). from_pretrained applies the
        conversion; strict loading makes any remaining mismatch an error. DeepSpeed resumes its own way."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model if model is not None else self.model
        if hasattr(model, "peft_config"):  # LoRA: the checkpoint holds the adapter (pgpo.training.lora)
            return _load_adapter_strictly(model, resume_from_checkpoint)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
        model.load_state_dict(saved.state_dict(), strict=True)
        del saved

    def _load_optimizer_and_scheduler(self, checkpoint):
        """transformers 5.17 maps the optimizer state to args.device when world_size > 1: under several CPU
        processes that is torch.device('cpu', 0), which torch.load cannot restore to ("don't know how to restore
        data location ... tagged with cpu:0"). Map to 'cpu' there; every other case is transformers' own."""
        optimizer = os.path.join(checkpoint, "optimizer.pt") if checkpoint else ""
        if (not optimizer or self.is_deepspeed_enabled or self.args.world_size == 1
                or self.args.device.type != "cpu" or not os.path.isfile(optimizer)):
            return super()._load_optimizer_and_scheduler(checkpoint)
        self.optimizer.load_state_dict(torch.load(optimizer, map_location="cpu", weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(os.path.join(checkpoint, "scheduler.pt"), weights_only=True))
        return None
