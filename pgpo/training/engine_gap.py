"""The rollout engine's log-probs against the trainer's, as a logged training statistic.

With vLLM rollouts TRL keeps the engine's log-prob of every sampled token (`sampling_per_token_logps`). The
trainer scores the same tokens with the same weights; the two should agree up to kernel numerics. A large gap is
a silent bug, not noise: a prompt the engine saw differently (TRL #6294's doubly expanded image pads: 1.46 nats on
average on the warm tiny model), weights not synced, a template or processor mismatch (TRL #4772, #6789). TRL 1.16
logs its own `sampling/sampling_logp_difference/*` only when its importance-sampling correction is on, which the
paper recipe keeps off; these statistics are logged whenever both log-probs exist (pgpo/training/trainer.py):
    rollout_gap/mean_abs_logp   mean over completion tokens of |log p_engine - log p_trainer| (nats)
    rollout_gap/max_abs_logp    its max (per batch it is computed on; the step's value averages the batches)
"""

from __future__ import annotations

import torch

NAMESPACE = "rollout_gap"


def logp_gap(engine: torch.Tensor, trainer: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """engine, trainer: [B,T] log-probs of the sampled tokens; mask: [B,T] completion tokens (nonzero = counted).
    -> {"mean_abs_logp", "max_abs_logp"} over the masked tokens where both are finite (the engine reports NaN for
    a token it could not score; such tokens are left out, not counted as 0); both 0.0 when no token counts."""
    delta = (engine.float() - trainer.detach().float()).abs()
    keep = mask.bool() & torch.isfinite(delta)
    if not keep.any():
        return {"mean_abs_logp": 0.0, "max_abs_logp": 0.0}
    delta = delta[keep]
    return {"mean_abs_logp": delta.mean().item(), "max_abs_logp": delta.max().item()}
