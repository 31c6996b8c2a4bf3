"""pgpo.models.attention: `sdpa_gqa` is transformers' sdpa bit for bit where no gradient is taken (logits of a left-padded
multimodal batch, a sampled generation), skips repeat_kv there, and is transformers' own sdpa under gradient."""

import pytest
import torch


@pytest.fixture(scope="module")
def pair(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from pgpo.models.attention import resolve

    load = lambda impl: AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32,
                                                                    attn_implementation=impl).eval()
    return load("sdpa"), load(resolve("sdpa"))


@pytest.fixture
def repeat_kv_calls(monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    original = sdpa.repeat_kv

    def counted(hidden, n_rep):
        calls.append(n_rep)
        return original(hidden, n_rep)

    monkeypatch.setattr(sdpa, "repeat_kv", counted)
    return calls


def test_resolve_maps_only_sdpa():
    from pgpo.models.attention import SDPA_GQA, resolve

    assert resolve("sdpa") == SDPA_GQA and resolve("eager") == "eager"
    assert resolve("flash_attention_2") == "flash_attention_2"


def test_no_grad_logits_and_sampling_are_bitwise_sdpa_without_repeat_kv(pair, encoded, repeat_kv_calls):
    enc, _ = encoded
    plain, fast = pair
    assert fast.config.text_config.num_attention_heads > fast.config.text_config.num_key_value_heads  # GQA
    with torch.no_grad():
        a = plain(**enc).logits
        n_plain = len(repeat_kv_calls)
        b = fast(**enc).logits
    assert n_plain > 0 and len(repeat_kv_calls) == n_plain  # the fast model never copied key/value heads
    assert torch.equal(a, b)
    prompt = {k: v for k, v in enc.items()}
    outs = []
    for model in pair:
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(model.generate(**prompt, do_sample=True, max_new_tokens=12, output_scores=True,
                                       return_dict_in_generate=True))
    assert torch.equal(outs[0].sequences, outs[1].sequences)
    assert all(torch.equal(x, y) for x, y in zip(outs[0].scores, outs[1].scores))


def test_under_gradient_it_is_transformers_sdpa(pair, encoded, repeat_kv_calls):
    enc, _ = encoded
    grads = []
    for model in pair:
        model.zero_grad()
        loss = torch.log_softmax(model(**enc).logits, -1)[..., 3].mean()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.zero_grad()
    assert len(repeat_kv_calls) == 2 * 2 * len(pair[0].model.language_model.layers)  # keys + values, both models
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
