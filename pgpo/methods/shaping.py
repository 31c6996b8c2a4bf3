"""From token visual dependency to token-level advantages (paper section 3), and the registry of token shapers.

A shaper receives the whole rollout batch it needs (ShapingBatch) and returns token advantages [B,T] with
statistics named relative to its namespace (ShapingResult). Register a new one with
``@SHAPERS.register(name, params=Dataclass, needs_blind_view=bool, per_response=bool)`` (the contract:
pgpo.methods.registry.Registry.register). ``needs_blind_view=True`` gives it the token visual dependency S (from the blind
view) in ``batch.dependency``. ``per_response=True`` declares that a response's token advantages depend only on
that response (its advantage, mask and S): the trainer may then shape each micro-batch inside the loss, from the
loss forward's own log-probs, instead of running an extra image-conditioned pass per generation step.
Every batch also carries the answer tokens (``batch.answer_mask``) and one seed per response (``batch.seeds``,
drawn through ``batch.generator(row)``), so a shaper that draws random numbers draws the same per response whether
the trainer shapes whole batches or micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgpo.methods.registry import Registry
from pgpo.util.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")  # imported at the first call: validating a method file needs no torch


def gate(importance: torch.Tensor, tau: float, beta: float, eps: float = 1e-6) -> torch.Tensor:
    """Threshold gate on normalised dependency I in [0,1]: suppress below tau, boost above. [...] -> [...]."""
    low = importance / (tau + eps)
    high = 1.0 + beta * (importance - tau) / (1.0 - tau + eps)
    return torch.where(importance < tau, low, high)


def normalised_dependency(dependency: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6):
    """Steps 1-2: log compression and per-response min-max. [B,T] x2 -> (I [B,T] in [0,1], spread [B,1]).

    Padding never enters min/max and gets I = 0; spread is max - min of log(1 + S) over the response's tokens.
    """
    valid = mask.bool()
    s = torch.log1p(dependency.float().clamp_min(0.0))
    lo = torch.where(valid, s, torch.inf).amin(-1, keepdim=True)
    hi = torch.where(valid, s, -torch.inf).amax(-1, keepdim=True)
    spread = (hi - lo).nan_to_num(0.0, posinf=0.0, neginf=0.0)  # an empty response has no spread
    importance = torch.where(valid, (s - lo) / (spread + eps), torch.zeros_like(s)).clamp(0.0, 1.0)
    return importance, spread


def pgpo_token_weights(dependency: torch.Tensor, mask: torch.Tensor, tau: float = 0.4, beta: float = 2.0,
                       eps: float = 1e-6, normalize: bool = True) -> torch.Tensor:
    """PGPO token weights. dependency S [B,T] (>= 0), mask [B,T] (1 = response token) -> weights [B,T].

    1. S~ = log(1 + S); 2. I = (S~ - min) / (max - min + eps) over the response's own tokens;
    3. w = gate(I; tau, beta); 4. if normalize, w <- w * n / sum(w) so each response's weights sum to its length n.
    Padding gets weight 0 and never enters min, max or sum, so padding amount cannot change any weight.
    Degenerate responses (one token, all scores equal, all-zero dependency: spread of S~ below eps) carry no ranking
    of their tokens and get weight 1 everywhere: the plain GRPO/DAPO advantage, never a zeroed one.
    """
    importance, spread = normalised_dependency(dependency, mask, eps)
    return weights_from_importance(importance, spread, mask, tau, beta, eps, normalize)


def weights_from_importance(importance: torch.Tensor, spread: torch.Tensor, mask: torch.Tensor, tau: float,
                            beta: float, eps: float, normalize: bool) -> torch.Tensor:
    """Steps 3-4 on the output of normalised_dependency. [B,T], [B,1], [B,T] -> [B,T]."""
    valid = mask.bool()
    w = gate(importance, tau, beta, eps)
    if normalize:
        n = valid.sum(-1, keepdim=True).to(w.dtype)
        total = torch.where(valid, w, torch.zeros_like(w)).sum(-1, keepdim=True)
        w = w * n / total.clamp_min(1e-12)
    degenerate = spread < eps
    w = torch.where(degenerate, torch.ones_like(w), w)
    return torch.where(valid, w, torch.zeros_like(w))


@dataclass
class ShapingBatch:
    """What a shaper sees: one rollout batch (B responses, T completion tokens)."""

    advantages: torch.Tensor
    """[B] sequence-level group-relative advantages."""
    completion_mask: torch.Tensor
    """[B,T] 1 on response tokens."""
    dependency: torch.Tensor | None = None
    """[B,T] token visual dependency S (None if the shaper needs none)."""
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    """Concatenates a tensor over all processes."""
    answer_mask: torch.Tensor | None = None
    """[B,T] bool, True on the tokens carrying the content of the response's last \\boxed{} (pgpo.methods.answer_span);
    None where the framework could not compute it (no tokenizer)."""
    seeds: torch.Tensor | None = None
    """[B] int64, one seed per response from (run seed, optimizer step, process, row of the generation batch): the
    same response gets the same seed whether it is shaped with its whole batch or in a micro-batch, in a rerun or
    after a resume. Draw through ``generator(row)``."""

    def generator(self, row: int) -> torch.Generator:
        """A CPU torch.Generator seeded for response `row` (the framework's per-response seed)."""
        if self.seeds is None:
            raise ValueError("this shaper draws random numbers but the batch has no per-response seeds "
                             "(ShapingBatch.seeds is None: build the batch through the trainer)")
        return torch.Generator().manual_seed(int(self.seeds[row]))


@dataclass
class ShapingResult:
    """Token-level advantages for TRL's loss, and statistics to log."""

    token_advantages: torch.Tensor
    """[B,T] token advantages (0 on padding)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Statistics to log, named relative to the shaper's namespace (the trainer logs ``<namespace>/<name>``)."""


SHAPERS: Registry = Registry("token shaper")


@SHAPERS.register("identity", per_response=True)
def identity(batch: ShapingBatch, params: None) -> ShapingResult:
    """GRPO/DAPO: the sequence advantage broadcast to every token."""
    mask = batch.completion_mask.to(batch.advantages.dtype)
    return ShapingResult(batch.advantages[:, None] * mask)


@dataclass
class PGPOParams:
    """Parameters of the PGPO threshold gate (paper defaults)."""

    tau: float = 0.4
    """Threshold on normalised dependency: tokens below are suppressed, above boosted."""
    beta: float = 2.0
    """Boost strength above the threshold."""
    eps: float = 1e-6
    """The paper's "small constant" in the min-max and gate denominators."""
    normalize: bool = True
    """Mass conservation: weights of a response sum to its length."""

    def __post_init__(self):
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"pgpo: tau must be in [0, 1] (0 = boost only, 1 = suppress only), got {self.tau}")
        if self.beta < 0.0:
            raise ValueError(f"pgpo: beta must be >= 0, got {self.beta}")
        if not 0.0 < self.eps < 1e-2:
            raise ValueError(f"pgpo: eps must be a small positive constant, got {self.eps}")


def _pgpo_weights(batch: ShapingBatch, params: PGPOParams) -> tuple[torch.Tensor, dict[str, float]]:
    """PGPO's token weights of the batch [B,T] and their statistics (shared by pgpo and its placebo)."""
    mask = batch.completion_mask
    # exactly the function the property tests check (tests/methods/test_shaping.py)
    w = pgpo_token_weights(batch.dependency, mask, params.tau, params.beta, params.eps, params.normalize)
    importance, _ = normalised_dependency(batch.dependency, mask, params.eps)  # for frac_boosted only
    valid = mask.bool()
    sums = (w * valid).sum(-1)
    lengths = valid.sum(-1).clamp_min(1)
    stats = {
        "max": w[valid].max().item() if valid.any() else 0.0,
        "frac_boosted": (importance >= params.tau)[valid].float().mean().item() if valid.any() else 0.0,
        "sum_over_length_mean": (sums / lengths).mean().item(),
        "sum_minus_length_absmax": (sums - valid.sum(-1)).abs().max().item(),
    }
    return w, stats


@SHAPERS.register("pgpo", params=PGPOParams, needs_blind_view=True, per_response=True, stats_namespace="weights")
def pgpo(batch: ShapingBatch, params: PGPOParams) -> ShapingResult:
    """PGPO: A~_{i,t} = A_i * w~_t with w~ from pgpo_token_weights."""
    w, stats = _pgpo_weights(batch, params)
    return ShapingResult(batch.advantages[:, None].to(w.dtype) * w, stats)


# -- controls for the credit-assignment testbed: where the weight goes, with the mass held fixed ---------------------
def oracle_token_weights(answer_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """All of a response's weight on its answer tokens. answer_mask, mask [B,T] -> weights [B,T].

    Mass-conserving like PGPO: a response of n tokens with a answer tokens gets n / a on each answer token and 0
    elsewhere (sum n). A response without answer tokens keeps weight 1 everywhere (the plain advantage). Padding 0.
    """
    valid = mask.bool()
    answer = answer_mask.bool() & valid
    n = valid.sum(-1, keepdim=True).to(torch.float32)
    a = answer.sum(-1, keepdim=True).to(torch.float32)
    w = torch.where(a > 0, torch.where(answer, n / a.clamp_min(1.0), 0.0), 1.0)
    return torch.where(valid, w, 0.0)


@SHAPERS.register("oracle", per_response=True)
def oracle(batch: ShapingBatch, params: None) -> ShapingResult:
    """Oracle credit assignment: A~_{i,t} = A_i * n_i / |answer_i| on the answer tokens, 0 elsewhere (what PGPO
    would do with a perfect dependency score on a task whose only image-dependent tokens are the answer)."""
    if batch.answer_mask is None:
        raise ValueError("oracle: the batch has no answer mask (ShapingBatch.answer_mask is None)")
    w = oracle_token_weights(batch.answer_mask, batch.completion_mask)
    valid = batch.completion_mask.bool()
    responses = valid.any(-1)  # an all-padding row is no response
    without = ~(batch.answer_mask.bool() & valid).any(-1) & responses
    stats = {"no_answer_responses": float(without.sum()),
             "no_answer_fraction": float(without.sum()) / max(int(responses.sum()), 1)}
    return ShapingResult(batch.advantages[:, None].to(w.dtype) * w, stats)


def shuffle_within_responses(weights: torch.Tensor, mask: torch.Tensor, batch: ShapingBatch) -> torch.Tensor:
    """Each response's weights permuted over its own valid tokens with its own generator (batch.generator(row)):
    the same multiset per response (same sparsity and mass), on other tokens. [B,T] -> [B,T], padding stays 0."""
    out = torch.zeros_like(weights)
    for row in range(weights.size(0)):
        cols = mask[row].bool().nonzero().flatten()
        # the per-response generator is a CPU one (seeded on every process alike): draw there, then move
        perm = torch.randperm(cols.numel(), generator=batch.generator(row), device="cpu").to(cols.device)
        out[row, cols] = weights[row, cols[perm]]
    return out


@SHAPERS.register("placebo", params=PGPOParams, needs_blind_view=True, per_response=True)
def placebo(batch: ShapingBatch, params: PGPOParams) -> ShapingResult:
    """PGPO's weights (PGPO's parameters, from the same blind view) shuffled within each response: the same
    sparsity and mass as PGPO, on the wrong tokens. Separates "PGPO reweights tokens" from "PGPO finds the
    grounded ones"."""
    w, stats = _pgpo_weights(batch, params)
    shuffled = shuffle_within_responses(w, batch.completion_mask, batch)
    stats["moved_fraction"] = ((shuffled != w) & batch.completion_mask.bool()).float().sum().item() / max(
        batch.completion_mask.bool().sum().item(), 1)
    return ShapingResult(batch.advantages[:, None].to(w.dtype) * shuffled, stats)


# -- VPPO (arXiv 2510.09285) ---------------------------------------------------------------------------------------
def top_fraction_mask(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """True at the ceil(fraction * n_i) highest-scoring tokens of each response. [B,T] x2 -> [B,T] bool.

    Ties are broken by position (the earlier token wins: a stable sort), so the selection is deterministic.
    """
    valid = mask.bool()
    n = valid.sum(-1, keepdim=True)
    k = torch.ceil(n.double() * fraction - 1e-9).long()  # 1e-9: 0.4 * 15 is 6.000000000000001 in floating point
    order = torch.sort(torch.where(valid, scores.float(), -torch.inf), dim=-1, descending=True, stable=True).indices
    positions = torch.arange(scores.size(-1), device=scores.device).expand_as(order).contiguous()
    rank = torch.empty_like(order).scatter_(-1, order, positions)
    return (rank < k) & valid


def trajectory_scale(dependency: torch.Tensor, mask: torch.Tensor, alpha_min: float,
                     gather: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> torch.Tensor:
    """VPPO's per-response advantage scale alpha with mean exactly 1 over the whole (all-process) batch. -> [B].

    s_i = mean dependency of response i; n = min-max of s over the batch; alpha = a + n (b_max - a) with
    b_max = a + (1 - a) / mean(n). If every response has the same s there is nothing to rank: alpha = 1.
    """
    valid = mask.to(torch.float32)
    s = (dependency.float() * valid).sum(-1) / valid.sum(-1).clamp_min(1.0)
    everyone = gather(s)
    lo, hi = everyone.min(), everyone.max()
    if hi - lo < 1e-12:
        return torch.ones_like(s)
    n, n_all = (s - lo) / (hi - lo), (everyone - lo) / (hi - lo)
    b_max = alpha_min + (1.0 - alpha_min) / n_all.mean()
    return alpha_min + n * (b_max - alpha_min)


@dataclass
class VPPOParams:
    """VPPO's token filter and trajectory shaping (paper defaults)."""

    top_fraction: float = 0.4
    """Share of each response's tokens (highest dependency, rounded up) given gradient."""
    alpha_min: float = 0.9
    """Advantage scale of the batch's least visually dependent response (mean scale is 1)."""

    def __post_init__(self):
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"vppo: top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0.0 < self.alpha_min <= 1.0:
            raise ValueError(f"vppo: alpha_min must be in (0, 1], got {self.alpha_min}")


@SHAPERS.register("vppo", params=VPPOParams, needs_blind_view=True)
def vppo(batch: ShapingBatch, params: VPPOParams) -> ShapingResult:
    """VPPO: A~_{i,t} = alpha_i * A_i on the top tokens by dependency, 0 elsewhere.

    Filtered tokens keep their place in the loss's denominator (their advantage is 0, not masked out), as in the
    original: the dapo loss still divides by all tokens of the batch.
    """
    mask = batch.completion_mask
    keep = top_fraction_mask(batch.dependency, mask, params.top_fraction)
    alpha = trajectory_scale(batch.dependency, mask, params.alpha_min, batch.gather)
    adv = batch.advantages[:, None].float() * alpha[:, None] * keep
    valid = mask.bool()
    stats = {
        "kept_fraction": keep.sum().item() / max(valid.sum().item(), 1),
        "alpha_min": alpha.min().item(), "alpha_max": alpha.max().item(),
        "alpha_mean": alpha.mean().item(),  # this process's responses
        "alpha_mean_all": batch.gather(alpha).mean().item(),  # every process's: 1 by construction
    }
    return ShapingResult(adv.to(batch.advantages.dtype), stats)
