"""Token visual dependency (paper section 2): how much the image changes the policy's next-token distribution.

S_t = KL(pi(.|s_t, I) || pi(.|s_t)). The blind policy pi(.|s_t) is the SAME model over the SAME text tokens with
every visual token hidden from attention while each text token keeps the mRoPE position id it has in the full
sequence (the blind sequence: pgpo.models.blind_sequence; the pass through TRL's LM head: pgpo.training.blind_forward).
Decision on the markers: <|vision_start|> and <|vision_end|> are hidden with the image pads, so the blind context is
exactly the text-only prompt (an empty "image slot" would be a context the model never saw).

Pure tensor functions: the one-sample estimate k3 the trainer uses, the exact KL (`full_kl`, projecting hidden states
through the LM head a chunk of tokens at a time, so [B,T,V] never exists), and the visual span.
Shapes: B responses, T completion tokens, L = prompt + completion length, H hidden size, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgpo.util.lazy import LazyModule, no_grad

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")  # imported at the first call: loss_terms (a registry) imports k3 from here

def k3(logp_image: torch.Tensor, logp_blind: torch.Tensor, mask: torch.Tensor, log_ratio_clip: float = 30.0,
       kl_clip: float | None = None) -> torch.Tensor:
    """One-sample KL estimate at the sampled token. [B,T] x3 -> [B,T].

    r = pi_blind(x_t) / pi_image(x_t); S = (r - 1) - log r >= 0 (Schulman's k3). Zero where mask is 0. log r is
    clamped to +-log_ratio_clip. kl_clip None (PGPO's dependency score): an extreme ratio gives a large finite value,
    never inf or NaN. kl_clip set (PAPO's bounded KL, pgpo.methods.loss_terms.perception_kl: clips 20 and 10): S is
    clamped to [0, kl_clip]; torch.clamp passes no gradient where it clamps, so a token whose blind probability
    collapsed cannot dominate the update (maximising an unbounded KL rewards driving such tokens further apart).
    """
    log_r = (logp_blind - logp_image).float().clamp(-log_ratio_clip, log_ratio_clip)
    s = torch.expm1(log_r) - log_r
    if kl_clip is None:
        s = torch.nan_to_num(s, nan=0.0, posinf=0.0).clamp_min(0.0)
    else:
        s = s.clamp(0.0, kl_clip)
    return s * mask.to(s.dtype)


def visual_span_mask(input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, vision_start_id: int,
                     vision_end_id: int, include_markers: bool = True) -> torch.Tensor:
    """True at visual tokens (image/video pads, and the vision markers if include_markers). [B,L] -> [B,L] bool."""
    visual = mm_token_type_ids != 0
    if include_markers:
        visual = visual | (input_ids == vision_start_id) | (input_ids == vision_end_id)
    return visual


def completion_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-prob of each completion token. logits [B,T,V] predicting completion_ids [B,T] -> [B,T] (fp32).

    Holds fp32 [B,T,V]: only for small batches (the probe); training paths use `chunked_logprobs`."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


@no_grad
def full_kl(hidden_image: torch.Tensor, hidden_blind: torch.Tensor, lm_head: torch.nn.Module, mask: torch.Tensor,
            temperature: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Exact KL(pi_image || pi_blind) over the whole vocabulary per token, from final hidden states.

    hidden_image/hidden_blind [B,T,H] (e.g. `completion_hidden_states` / `blind_hidden_states`), lm_head the
    output embeddings (weight [V,H]), mask [B,T] -> [B,T] fp32, 0 where mask is 0. Only the masked-in tokens are
    projected, `chunk` at a time, so the fp32 temporaries stay O(chunk x V) and [B,T,V] never exists.
    """
    valid = mask.bool()
    hi, hb = hidden_image[valid], hidden_blind[valid]  # [N,H]
    out = torch.zeros(hi.size(0), dtype=torch.float32, device=hi.device)
    for start in range(0, hi.size(0), chunk):
        li = torch.log_softmax(lm_head(hi[start:start + chunk]).float() / temperature, dim=-1)
        lb = torch.log_softmax(lm_head(hb[start:start + chunk]).float() / temperature, dim=-1)
        out[start:start + chunk] = (li.exp() * (li - lb)).sum(-1).clamp_min(0.0)
    return torch.zeros(mask.shape, dtype=torch.float32, device=hi.device).masked_scatter(valid, out)
