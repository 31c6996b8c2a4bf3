"""What the testbed measures on a checkpoint, per sampled response (T = 1 from the policy, as in RL):

- the free response: format (pgpo.rewards.scoring.format_ok), correctness (grade), the policy's mean per-token entropy on
  its filler tokens (exact, from the image-conditioned logits) and the sampled filler tokens themselves;
- with a method given: the share of its token-advantage mass on the answer token(s), from the method's own blind
  view and shaper on S = k3(image, blind) of the sampled tokens, with advantage 1 (what the gates check);
- forced-answer probability: the sampled filler is cut where `</think>` begins, `</think>\\boxed{` is forced,
  and the probability of the gold answer (with its closing brace) is read off one forward pass. Per question, the
  mean over its samples is a low-noise accuracy (avg@k grades one sampled token; this is its expectation).
The filler of a response: its tokens after the leading `<think>` and before the first `</think>`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgpo.methods.answer_span import answer_token_mask, token_char_spans
from pgpo.data.datasets import Record
from pgpo.methods.dependency import k3
from pgpo.tiny.sampling import sample_batch
from pgpo.rewards.scoring import format_ok, grade

OPEN, CLOSE, FORCED = "<think>", "</think>", "</think>\\boxed{"


@dataclass
class Sample:
    """One sampled response and what was measured on it."""

    question: str
    """Record id of its question."""
    task: str
    """Skill of the question."""
    correct: float
    """1.0 if its boxed answer is the gold answer."""
    format: float
    """1.0 if it has the <think>...</think> then \\boxed{} format."""
    filler_ids: list[int]
    """Its sampled filler tokens."""
    filler_entropy: float
    """The policy's mean entropy (nats) at its filler positions (nan without filler)."""
    forced_p: float
    """P(gold answer + '}' | prompt, its filler, '</think>\\boxed{')."""
    answer_share: float | None = None
    """Share of the method's |token advantage| on the answer token(s) (0 without an answer; None: no method)."""


def filler_span(ids: list[int], tokenizer) -> tuple[int, int]:
    """[begin, end) token indices of the filler of one completion (`ids` without padding)."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    ends = [end for _, end in token_char_spans(ids, tokenizer)]
    first = len(OPEN) if text.startswith(OPEN) else 0
    close = text.find(CLOSE, first)
    last = close if close >= 0 else len(text)
    begin = next((i for i, e in enumerate(ends) if e > first), len(ids))
    end = next((i for i, e in enumerate(ends) if e > last), len(ids))
    if close < 0 and end == len(ids) and ids and ids[-1] == tokenizer.eos_token_id:
        end -= 1  # no </think>: the filler is everything sampled but the end of sequence
    return begin, max(begin, end)


def _image_logits(model, prompt, prompt_mask, comp, comp_mask, mm, grids, pixels, temperature):
    """log-softmax of the policy WITH the image at every completion position. -> [N,T,V] (tiny V only)."""
    t = comp.size(1)
    logits = model(input_ids=torch.cat([prompt, comp], 1), attention_mask=torch.cat([prompt_mask, comp_mask], 1),
                   mm_token_type_ids=torch.cat([mm, torch.zeros_like(comp)], 1), pixel_values=pixels,
                   image_grid_thw=grids, logits_to_keep=t + 1).logits[:, :-1]
    return torch.log_softmax(logits.float() / temperature, dim=-1)


@torch.no_grad()
def measure(model, processor, records: list[Record], k: int, max_new_tokens: int, temperature: float = 1.0,
            seed: int = 0, batch_size: int = 16, components=None, clamp_max: float = 0.0) -> list[Sample]:
    """k sampled responses per record, each measured (module docstring). `components`: a method's resolved
    components (pgpo.methods.components.resolve_components) whose answer share is measured; None skips it."""
    from pgpo.methods.blind import BlindInputs
    from pgpo.methods.shaping import ShapingBatch

    torch.manual_seed(seed)
    tok = processor.tokenizer
    tok.padding_side = "left"
    model.eval()
    vision_ids = tok.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"])
    forced = tok(FORCED, add_special_tokens=False)["input_ids"]
    out: list[Sample] = []
    for lo in range(0, len(records), batch_size):
        chunk = records[lo:lo + batch_size]
        batch = sample_batch(model, processor, chunk, k, temperature, max_new_tokens, vision_ids)
        prompt, prompt_mask, mm = batch["prompt"], batch["prompt_mask"], batch["mm"]
        comp, comp_mask, grids, pixels = batch["completion"], batch["completion_mask"], batch["grids"], batch["pixels"]
        logp = _image_logits(model, prompt, prompt_mask, comp, comp_mask, mm, grids, pixels, temperature)
        entropy = -(logp.exp() * logp).sum(-1)  # [N,T]
        sampled = logp.gather(-1, comp.unsqueeze(-1)).squeeze(-1)
        shares = None
        if components is not None:
            shares = _answer_shares(model, components, clamp_max, tok, chunk, k, temperature, prompt, prompt_mask,
                                    comp, comp_mask, mm, grids, pixels, sampled, processor, seed, BlindInputs,
                                    ShapingBatch)
        rows, forced_rows = [], []
        for i in range(comp.size(0)):
            record = chunk[i // k]
            ids = comp[i, :int(comp_mask[i].sum())].tolist()
            begin, end = filler_span(ids, tok)
            answer = tok(record.answer + "}", add_special_tokens=False)["input_ids"]
            forced_rows.append((ids[:end] + forced, len(answer), answer))
            text = tok.decode(ids, skip_special_tokens=True)
            ent = entropy[i, begin:end].mean().item() if end > begin else float("nan")
            rows.append(Sample(record.id, record.task, grade(text, record.answer, record.choices), format_ok(text),
                               ids[begin:end], ent, float("nan"),
                               None if shares is None else shares[i]))
        for sample, p in zip(rows, _forced_p(model, prompt, prompt_mask, mm, grids, pixels, forced_rows,
                                             tok.pad_token_id, temperature)):
            sample.forced_p = p
        out += rows
    return out


def _forced_p(model, prompt, prompt_mask, mm, grids, pixels, rows, pad_id, temperature) -> list[float]:
    """P(answer tokens | prompt, prefix) for rows of (prefix ids, answer length, answer ids)."""
    seqs = [prefix + answer for prefix, _, answer in rows]
    width = max(len(s) for s in seqs)
    comp = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        comp[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    logp = _image_logits(model, prompt, prompt_mask, comp, mask, mm, grids, pixels, temperature)
    picked = logp.gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    return [picked[i, len(prefix):len(prefix) + n].sum().exp().item() for i, (prefix, n, _) in enumerate(rows)]


def _answer_shares(model, components, clamp_max, tok, chunk, k, temperature, prompt, prompt_mask, comp, comp_mask,
                   mm, grids, pixels, sampled, processor, seed, BlindInputs, ShapingBatch) -> list[float]:
    """Per response: sum |A~| on its answer tokens / sum |A~| over it, A~ the method's token advantages for a
    sequence advantage of 1 (S from the method's own blind view of this very batch)."""
    batch = {"prompt_ids": prompt, "prompt_mask": prompt_mask, "completion_ids": comp, "completion_mask": comp_mask,
             "mm_token_type_ids": torch.cat([mm, torch.zeros_like(comp)], 1), "image_grid_thw": grids,
             "pixel_values": pixels}
    dependency = None
    if components.blind_view is not None:
        from pgpo.training.blind_forward import blind_forward  # TRL's LM head (not the trainer)

        def forward(**overrides):  # the sampled tokens' log-probs with some inputs replaced (blackened pixels)
            b = {**batch, **overrides}
            lp = _image_logits(model, prompt, prompt_mask, comp, comp_mask, mm, grids, b["pixel_values"],
                               temperature)
            return lp.gather(-1, comp.unsqueeze(-1)).squeeze(-1)

        rows = [{"id": r.id, "image": r.image} for r in chunk for _ in range(k)]
        view = BlindInputs(model=model, batch=batch, rows=rows, group_size=k, step=0, seed=seed,
                           temperature=temperature, micro_batch=comp.size(0), forward=forward,
                           blind_forward=blind_forward,
                           image_processor=processor.image_processor)
        blind, _ = components.blind_view.entry.fn(view, components.blind_view.params)
        dependency = k3(sampled, blind.nan_to_num(0.0), comp_mask)
        if clamp_max > 0:
            dependency = dependency.clamp(max=clamp_max)
    shaper = components.shaper
    answer = answer_token_mask(comp, comp_mask, tok)
    # the framework's per-response inputs (answer tokens, a seed per response) for shapers that read them
    batch = ShapingBatch(torch.ones(comp.size(0)), comp_mask, dependency if shaper.entry.needs_blind_view else None,
                         answer_mask=answer, seeds=seed * 100003 + torch.arange(comp.size(0), dtype=torch.int64))
    result = shaper.entry.fn(batch, shaper.params)
    mass = result.token_advantages.abs() * comp_mask
    total = mass.sum(-1)
    return [(mass[i][answer[i]].sum() / total[i]).item() if total[i] > 0 else 0.0 for i in range(comp.size(0))]


def load_measured_model(checkpoint):
    """A checkpoint for the testbed's no-gradient measurements (gates, records): float32, eval mode, with the
    bitwise-exact generation speed-ups (pgpo.models.attention's sdpa_gqa, pgpo.models.shared_prefill)."""
    from pgpo.models.loading import load_model

    return load_model(checkpoint, attn_implementation="sdpa", fast_attention=True, shared_prefill=True,
                      eval_mode=True)
