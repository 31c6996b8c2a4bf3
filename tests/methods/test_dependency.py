"""Token visual dependency: k3, the blind pass on the real tiny Qwen2.5-VL, and the chunked full KL."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpo.methods.dependency import completion_logprobs, full_kl, k3, visual_span_mask
from pgpo.models.blind_sequence import blind_hidden_states, completion_hidden_states, mrope_position_ids
from pgpo.training.blind_forward import blind_forward


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-60, 0), st.floats(-60, 0)), min_size=1, max_size=20))
def test_k3_nonnegative_finite_zero_on_padding(pairs):
    li = torch.tensor([[a for a, _ in pairs]])
    lb = torch.tensor([[b for _, b in pairs]])
    mask = torch.ones_like(li)
    mask[0, -1] = 0
    s = k3(li, lb, mask)
    assert torch.isfinite(s).all() and (s >= 0).all() and s[0, -1] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, 0), st.floats(-20, 0)), min_size=1, max_size=20))
def test_k3_is_the_closed_form_at_the_sampled_token(pairs):
    """S = (r - 1) - log r with r = pi_blind / pi_image, computed here in float64 from the log-probs: a swapped
    ratio (pi_image / pi_blind) or a sign error gives other values (non-negativity alone would not see it)."""
    li = torch.tensor([[a for a, _ in pairs]])
    lb = torch.tensor([[b for _, b in pairs]])
    log_r = lb.double() - li.double()
    expected = torch.expm1(log_r) - log_r
    assert torch.allclose(k3(li, lb, torch.ones_like(li)).double(), expected, rtol=1e-5, atol=1e-6)


def test_k3_values():
    li, lb = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.25, 0.5]]))
    s = k3(li, lb, torch.ones(1, 2))
    assert s[0, 0].item() == pytest.approx((0.5 - 1) - torch.log(torch.tensor(0.5)).item())
    assert s[0, 1].item() == 0.0


def _image_logprobs(model, enc, t):
    out = model(**enc, logits_to_keep=t + 1)
    return completion_logprobs(out.logits[:, :-1], enc["input_ids"][:, -t:]), out.logits[:, :-1]


def test_blind_pass_equals_removing_the_visual_span_with_original_positions(tiny, encoded):
    model, _ = tiny
    enc, t = encoded
    blind = blind_forward(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                          enc["image_grid_thw"], t)
    pos = mrope_position_ids(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                             enc["image_grid_thw"])
    vis = visual_span_mask(enc["input_ids"], enc["mm_token_type_ids"], model.config.vision_start_token_id,
                           model.config.vision_end_token_id)
    assert vis.sum(-1).tolist() == [18, 18, 18]  # 16 image pads + the two markers
    for b in range(enc["input_ids"].size(0)):
        keep = (~vis[b]) & enc["attention_mask"][b].bool()
        ids = enc["input_ids"][b][keep][None]
        with torch.no_grad():
            out = model(input_ids=ids, position_ids=pos[:, b][:, keep][:, None], attention_mask=torch.ones_like(ids))
        reference = completion_logprobs(out.logits[:, -t - 1:-1], ids[:, -t:])[0]
        assert torch.allclose(blind[b], reference, atol=1e-5), (blind[b] - reference).abs().max()


def test_blind_pass_differs_from_the_image_pass(tiny, encoded):
    model, _ = tiny
    enc, t = encoded
    with torch.no_grad():
        with_image, _ = _image_logprobs(model, enc, t)
    blind = blind_forward(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                          enc["image_grid_thw"], t)
    assert (with_image - blind).abs().max() > 1e-3


def test_masked_attention_without_position_ids_shifts_positions(tiny, encoded):
    """Guard: letting Qwen2.5-VL derive positions from the masked attention mask changes them (the silent shift)."""
    model, _ = tiny
    enc, _ = encoded
    vis = visual_span_mask(enc["input_ids"], enc["mm_token_type_ids"], model.config.vision_start_token_id,
                           model.config.vision_end_token_id)
    masked = enc["attention_mask"] * (~vis).long()
    right = mrope_position_ids(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                               enc["image_grid_thw"])
    text_only = (~vis) & enc["attention_mask"].bool()
    # transformers 5.17 does not crash here: it silently derives other positions for the text tokens
    derived = mrope_position_ids(model, enc["input_ids"], masked, enc["mm_token_type_ids"], enc["image_grid_thw"])
    assert not torch.equal(derived[:, text_only], right[:, text_only])


def test_full_kl_matches_naive_and_k3_average(tiny, encoded):
    model, _ = tiny
    enc, t = encoded
    head = model.get_output_embeddings()
    pos = mrope_position_ids(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                             enc["image_grid_thw"])
    with torch.no_grad():
        h_image = completion_hidden_states(model, t, position_ids=pos, **enc)
        h_blind = blind_hidden_states(model, enc["input_ids"], enc["attention_mask"], enc["mm_token_type_ids"],
                                      enc["image_grid_thw"], t)
        logits_i, logits_b = head(h_image), head(h_blind)
        assert torch.allclose(logits_i, _image_logprobs(model, enc, t)[1], atol=1e-5)
    mask = torch.ones(logits_i.shape[:2])
    chunked = full_kl(h_image, h_blind, head, mask, chunk=4)
    pi, pb = torch.log_softmax(logits_i, -1), torch.log_softmax(logits_b, -1)
    naive = (pi.exp() * (pi - pb)).sum(-1)
    assert (chunked >= 0).all() and torch.allclose(chunked, naive, atol=1e-6)
    # k3 at tokens sampled from pi_image is an unbiased estimate of the full KL
    gen = torch.Generator().manual_seed(0)
    n = 20000
    samples = torch.multinomial(pi[0, 0].exp(), n, replacement=True, generator=gen)
    est = k3(pi[0, 0][samples][None], pb[0, 0][samples][None], torch.ones(1, n)).mean()
    assert est.item() == pytest.approx(naive[0, 0].item(), rel=0.1, abs=1e-3)
