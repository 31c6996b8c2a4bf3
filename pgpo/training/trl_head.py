"""TRL's chunked LM head (log-probs of chosen tokens without [B,T,V] logits) and the TRL pin, without importing
GRPOTrainer: the blind pass (pgpo.methods.dependency) computes its log-probs exactly like the policy's, and evaluation,
the testbed's records and `snakemake -n` need no trainer (importing trl.trainer costs ~9 s and ~1,000 modules).

Private TRL symbols read here, verified against the pin by tests/training/test_trl_contract.py: `_use_triton` and the chunk
size TRL's fused head passes (`trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE`, copied as CHUNK_SIZE so this module
does not import trl.trainer), and the fused head's `temperature` closure. The rest of TRL's private API the
trainer touches is in pgpo/training/trl_bridge.py.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

TRL_PIN = "1.16.0"  # the only TRL the touch points below are verified against (tests/training/test_trl_contract.py)
ALLOW_ENV = "PGPO_ALLOW_UNPINNED_TRL"  # set to 1 to try another TRL at your own risk (contract tests first)


def check_trl_version(found: str | None = None) -> None:
    """Refuse a TRL other than the pin: its private methods may have moved, and a silent change in one of them
    (e.g. where the loss reads the advantages) would change the objective without an error."""
    try:
        found = found or version("trl")
    except PackageNotFoundError:
        raise ImportError(f"pgpo needs trl=={TRL_PIN}, which is not installed: bash scripts/install.sh") from None
    if found != TRL_PIN and os.environ.get(ALLOW_ENV) != "1":
        raise ImportError(
            f"pgpo is pinned to trl=={TRL_PIN} (it overrides private GRPOTrainer methods listed in "
            f"pgpo/training/trl_bridge.py) but trl=={found} is installed. Install the lock (bash scripts/install.sh) or "
            f"`pip install trl=={TRL_PIN}`; to try trl {found} anyway, run the contract tests "
            f"(pytest tests/training/test_trl_contract.py) with {ALLOW_ENV}=1.")


check_trl_version()

CHUNK_SIZE = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE at the pin (contract test)

import torch  # (after the pin check: a wrong TRL fails with its message above, not deep in TRL)

from pgpo.models.loading import hf_model


def fused_head(model):
    """TRL's fused-LM-head forward installed on `model` by add_fused_lm_head (through accelerate's autocast
    wrappers, which keep __wrapped__), or None on a plain model."""
    fn = getattr(hf_model(model), "forward", None)
    while fn is not None:
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None and "fused_lm_head" in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]:
            return getattr(fn, "__func__", fn)
        fn = getattr(fn, "__wrapped__", None)
    return None


def fused_temperature(fn) -> float | None:
    """The temperature baked into TRL's fused head (a closure variable), None if it cannot be read."""
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    try:
        return float(cells["temperature"].cell_contents)
    except (KeyError, ValueError, TypeError):
        return None


def chunked_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of `targets` under the LM head at `hidden`, through TRL's ChunkedLogProbFunction with the
    arguments TRL's fused head passes it. hidden [B,T,H], targets/valid [B,T] -> [B,T] fp32, 0 where not valid.

    Like TRL, only the valid tokens are projected where the Triton kernel runs; elsewhere every token is (the tile
    shapes then do not depend on the batch)."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction, _use_triton

    inner = hf_model(model)
    text_config = inner.config.get_text_config()
    head = inner.get_output_embeddings()
    valid = valid.bool()
    compact = _use_triton(hidden.device)
    h = hidden[valid] if compact else hidden.reshape(-1, hidden.size(-1))
    t = targets[valid] if compact else targets.clamp(min=0).reshape(-1)
    logp = ChunkedLogProbFunction.apply(h.to(head.weight.device), head.weight, head.bias, t.to(head.weight.device),
                                        temperature, CHUNK_SIZE,
                                        getattr(text_config, "final_logit_softcapping", None),
                                        getattr(text_config, "logit_scale", None) or 1.0, ("log_probs",))[0]
    if compact:
        return logp.new_zeros(valid.shape).masked_scatter(valid, logp)
    return logp.view(valid.shape).masked_fill(~valid, 0.0)
