"""Auxiliary loss terms added to TRL's clipped surrogate, and their registry (PAPO's perception KL, entropy penalties).

A method lists the terms it adds in its YAML (``loss_terms: {name: {params}}``); register one with
``@LOSS_TERMS.register(name, params=Dataclass, needs_blind_view=bool)`` (the contract:
pgpo.methods.registry.Registry.register; ``needs_blind_view`` fills ``batch.blind_logps``). A term receives one micro-batch's
log-probs WITH gradient (captured from TRL's own loss forward, so no extra pass) and returns a scalar to ADD to the
loss, plus a statistic to log. Every term is a token sum divided by the token count of the whole update batch
(``normalizer``), so summed over gradient-accumulation micro-batches it is the token mean over the update batch,
whatever the micro-batch size. Shapes: b completions of the micro-batch, T completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgpo.methods.dependency import k3
from pgpo.methods.registry import Registry

if TYPE_CHECKING:  # annotations only: validating a method file needs no torch
    import torch


@dataclass
class LossTermBatch:
    """What a loss term sees: one micro-batch of the update."""

    logps: torch.Tensor
    """[b,T] log pi_theta(o_t | image, q, o_<t), with gradient."""
    mask: torch.Tensor
    """[b,T] 1 on completion tokens."""
    blind_logps: torch.Tensor | None
    """[b,T] log-probs under the blind view, from the generation step, no gradient."""
    normalizer: torch.Tensor
    """Completion tokens of the whole update batch on this process (scalar)."""


@dataclass
class LossTermResult:
    """What a loss term returns for one micro-batch."""

    loss: torch.Tensor
    """Scalar added to the loss."""
    value: float
    """The term's token mean over this micro-batch (logged as loss_terms/<name>)."""


LOSS_TERMS: Registry = Registry("loss term")


def update_mean(x: torch.Tensor, batch: LossTermBatch) -> torch.Tensor:
    """This micro-batch's share of the token mean of x over the update batch. [b,T] -> scalar."""
    return (x * batch.mask).sum() / batch.normalizer


def micro_mean(x: torch.Tensor, batch: LossTermBatch) -> float:
    return ((x * batch.mask).sum() / batch.mask.sum().clamp_min(1)).item()


@dataclass
class PerceptionKLParams:
    """PAPO's implicit perception loss."""

    gamma: float = 0.01
    """Weight of the KL to MAXIMISE (PAPO: 0.02 on GRPO, 0.01 on DAPO)."""
    log_ratio_clip: float = 20.0
    """|log pi_blind - log pi_image| clamped here (PAPO's own code: 20)."""
    kl_clip: float = 10.0
    """Per-token KL clamped here (PAPO's own code: 10); no gradient beyond either clamp."""

    def __post_init__(self):
        if self.gamma < 0 or self.log_ratio_clip <= 0 or self.kl_clip <= 0:
            raise ValueError("perception_kl: gamma must be >= 0, log_ratio_clip and kl_clip > 0")


@LOSS_TERMS.register("perception_kl", params=PerceptionKLParams, needs_blind_view=True)
def perception_kl(batch: LossTermBatch, params: PerceptionKLParams) -> LossTermResult:
    """-gamma * token-mean clipped k3 KL(pi(.|image) || pi(.|blind)); gradient through the image branch only."""
    kl = k3(batch.logps, batch.blind_logps.detach(), batch.mask, params.log_ratio_clip, params.kl_clip)
    return LossTermResult(-params.gamma * update_mean(kl, batch), micro_mean(kl.detach(), batch))


@dataclass
class EntropyPenaltyParams:
    """An entropy penalty estimated at the sampled tokens: coef * token-mean(-log pi)."""

    coef: float = 0.0
    """> 0 penalises entropy (VPPO 0.06; PAPO-D 0.03 on each branch)."""


@LOSS_TERMS.register("entropy_penalty", params=EntropyPenaltyParams)
def entropy_penalty(batch: LossTermBatch, params: EntropyPenaltyParams) -> LossTermResult:
    """coef * token-mean(-log pi(o_t | image)) on the image-conditioned policy."""
    neg = -batch.logps
    return LossTermResult(params.coef * update_mean(neg, batch), micro_mean(neg.detach(), batch))


@LOSS_TERMS.register("blind_entropy_penalty", params=EntropyPenaltyParams, needs_blind_view=True)
def blind_entropy_penalty(batch: LossTermBatch, params: EntropyPenaltyParams) -> LossTermResult:
    """coef * token-mean(-log pi(o_t | blind view)): PAPO's second entropy term, on the masked-image branch.

    The masked-image log-probs are computed once per generation step without gradient (PAPO's default, whose
    authors report that recomputing them with gradient made no significant difference), so this term changes the
    logged loss but not the update.
    """
    neg = -batch.blind_logps.detach()
    return LossTermResult(params.coef * update_mean(neg, batch), micro_mean(neg, batch))
