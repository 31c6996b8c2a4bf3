"""The blind pass through TRL's chunked LM head on a real PGPOTrainer: equal to TRL's own log-probs where nothing
is hidden, equal to the old full-logits implementation where the image is hidden, dropping the visual columns
equal to masking them, and no [B,T,V] logits anywhere."""

import pytest
import torch
from PIL import Image

from pgpo.config.schema import REPO, load_method, load_train_config
from pgpo.methods.dependency import completion_logprobs, full_kl, visual_span_mask
from pgpo.models.blind_sequence import blind_hidden_states, blind_inputs, completion_hidden_states, drop_columns, mrope_position_ids
from pgpo.training.blind_forward import blind_forward

pytestmark = pytest.mark.slow
TEMPERATURE = 0.8  # not 1, so a path that ignores the temperature fails


@pytest.fixture(scope="module")
def trainer(tiny_dir, tiny_data, tmp_path_factory):
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 4, "update_prompts": 4, "num_generations": 4, "max_completion_length": 8,
                       "temperature": TEMPERATURE}, "micro_batch": 8, "max_steps": 1}
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)
    trainer = build_trainer(cfg, load_method("pgpo"), tmp_path_factory.mktemp("blind_trainer"))
    assert trainer.temperature == TEMPERATURE
    return trainer


def _turn(n_images: int, question: str) -> str:
    image = "<|vision_start|><|image_pad|><|vision_end|>" * n_images
    return (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{image}{question}"
            "<|im_end|>\n<|im_start|>assistant\n")


def _rollout_layout(processor, prompts, images, completions):
    """TRL's layout: left-padded prompts, right-padded completions. -> ids, attention, mm [B,L], grids, T."""
    tok = processor.tokenizer
    tok.padding_side = "left"
    enc = processor(images=images or None, text=prompts, padding=True, return_tensors="pt")
    comp = tok(completions, padding=True, padding_side="right", add_special_tokens=False, return_tensors="pt")
    ids = torch.cat([enc["input_ids"], comp["input_ids"]], dim=1)
    attention = torch.cat([enc["attention_mask"], comp["attention_mask"]], dim=1)
    mm = torch.cat([enc.get("mm_token_type_ids", torch.zeros_like(enc["input_ids"])),
                    torch.zeros_like(comp["input_ids"])], dim=1)
    return ids, attention, mm, enc.get("image_grid_thw"), comp["input_ids"].size(1)


@pytest.fixture(scope="module")
def mixed(tiny):
    """Rows with 1, 0, 2 and 1 images (18, 0, 36, 18 hidden tokens), prompts and completions of different lengths;
    the last completion contains a vision marker (kept in place and hidden, never dropped)."""
    _, processor = tiny
    colours = [Image.new("RGB", (112, 112), c) for c in ("red", "blue", "green", "white")]
    prompts = [_turn(1, "How many squares?"), _turn(0, "Name a colour."), _turn(2, "Same colour in both?"),
               _turn(1, "Which digit is shown here, exactly?")]
    completions = ["<think>I count the squares.</think>\\boxed{3}", "<think>red</think>\\boxed{red}",
                   "<think>I look at both images.</think>\\boxed{no}", "<think>a<|vision_end|>b</think>\\boxed{7}"]
    return _rollout_layout(processor, prompts, colours, completions)


def old_blind_logprobs(model, ids, attention, mm, grids, t, temperature):
    """The replaced implementation (reference only): visual tokens masked in place, full [B,T+1,V] logits."""
    cfg = model.config
    pos = mrope_position_ids(model, ids, attention, mm, grids)
    vis = visual_span_mask(ids, mm, cfg.vision_start_token_id, cfg.vision_end_token_id)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attention * (~vis).long(), position_ids=pos,
                    logits_to_keep=t + 1, use_cache=False)
    return completion_logprobs(out.logits[:, :-1], ids[:, -t:], temperature)


@pytest.fixture
def no_lm_head_call(trainer, tiny):
    """Fail if anything runs the LM head module (how full logits are made): the fused path uses its weight."""
    def refuse(module, args):
        raise AssertionError(f"LM head called on {tuple(args[0].shape)}: full-vocabulary logits materialised")

    handles = [m.get_output_embeddings().register_forward_pre_hook(refuse) for m in (trainer.model, tiny[0])]
    yield
    for h in handles:
        h.remove()


def test_blind_logprobs_equal_trls_own_pass_when_nothing_is_hidden(trainer, tiny, no_lm_head_call):
    _, processor = tiny
    prompts = [_turn(0, "Name a colour."), _turn(0, "What is two plus two, in words?"), _turn(0, "Hi")]
    completions = ["<think>red</think>\\boxed{red}", "<think>four</think>\\boxed{4}", "<think>hi</think>"]
    ids, attention, mm, grids, t = _rollout_layout(processor, prompts, [], completions)
    assert grids is None and (mm == 0).all()
    with torch.no_grad():
        trl, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, t, batch_size=2,
                                                               mm_token_type_ids=mm)
    valid = attention[:, -t:].bool()
    assert (~valid).any() and (attention[:, :-t] == 0).any()  # completion and prompt padding both present
    for drop in (True, False):
        blind = blind_forward(trainer.model, ids, attention, mm, grids, t, TEMPERATURE, drop=drop)
        assert torch.allclose(blind, trl, atol=1e-6, rtol=0), (blind - trl).abs().max()
        assert (blind[~valid] == 0).all()  # TRL's convention on completion padding
    # the prompt without left padding: TRL's and the blind positions coincide, so the numbers are bit-identical
    # (padded rows differ by ~1 ulp only because TRL numbers a text-only row's positions from the padding)
    full_row = attention[:, :-t].all(dim=1)
    assert full_row.sum() == 1
    assert torch.equal(blind_forward(trainer.model, ids, attention, mm, grids, t, TEMPERATURE)[full_row],
                       trl[full_row])


@pytest.fixture(scope="module")
def references(trainer, tiny, mixed):
    """The old implementation's blind log-probs of `mixed`: the trainer's policy (fused head) and the plain model."""
    ids, attention, mm, grids, t = mixed
    return (old_blind_logprobs(trainer.model, ids, attention, mm, grids, t, TEMPERATURE),
            old_blind_logprobs(tiny[0], ids, attention, mm, grids, t, 0.6))


def test_blind_logprobs_equal_the_full_logits_reference(trainer, tiny, mixed, references, no_lm_head_call):
    ids, attention, mm, grids, t = mixed
    valid = attention[:, -t:].bool()
    reference, plain_reference = references
    cases = [(trainer.model, TEMPERATURE, reference), (tiny[0], 0.6, plain_reference)]  # fused head / plain model
    for model, temperature, ref in cases:
        for drop in (False, True):
            blind = blind_forward(model, ids, attention, mm, grids, t, temperature, drop=drop)
            assert torch.allclose(blind[valid], ref[valid], atol=1e-5), (blind[valid] - ref[valid]).abs().max()
            assert (blind[~valid] == 0).all()
    # the image matters on this batch, so equality above is not the trivial "nothing hidden" case
    with torch.no_grad():
        image, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, t, mm_token_type_ids=mm, image_grid_thw=grids, num_images=[1, 0, 2, 1],
            pixel_values=tiny[1].image_processor(images=[Image.new("RGB", (112, 112), c) for c in
                                                         ("red", "blue", "green", "white")],
                                                 return_tensors="pt")["pixel_values"])
    assert (image - reference)[valid].abs().max() > 1e-3


def test_the_temperature_must_match_the_fused_head(trainer, mixed):
    ids, attention, mm, grids, t = mixed
    with pytest.raises(ValueError, match="temperature"):
        blind_forward(trainer.model, ids, attention, mm, grids, t, 1.0)


def test_dropping_the_visual_columns_equals_masking_them(tiny, mixed):
    model, _ = tiny
    ids, attention, mm, grids, t = mixed
    masked = blind_inputs(model, ids, attention, mm, grids, t, drop=False)
    dropped = blind_inputs(model, ids, attention, mm, grids, t, drop=True)
    hidden = visual_span_mask(ids, mm, model.config.vision_start_token_id, model.config.vision_end_token_id)
    hidden_prompt = hidden[:, :-t] & attention[:, :-t].bool()
    assert hidden_prompt.sum(-1).tolist() == [18, 0, 36, 18]
    text_prompt = (attention[:, :-t].bool() & ~hidden[:, :-t]).sum(-1)
    assert dropped["input_ids"].size(1) == int(text_prompt.max()) + t < ids.size(1)
    # no visual token survives in any prompt; the marker inside the last completion is kept and hidden
    cfg = model.config
    prompt = dropped["input_ids"][:, :-t]
    assert not torch.isin(prompt, torch.tensor([cfg.image_token_id, cfg.vision_start_token_id,
                                                cfg.vision_end_token_id])).any()
    assert torch.equal(dropped["input_ids"][:, -t:], ids[:, -t:])
    marker = dropped["input_ids"][:, -t:] == cfg.vision_end_token_id
    assert marker.sum() == 1 and (dropped["attention_mask"][:, -t:][marker] == 0).all()
    assert (dropped["label_mask"][:, -t:][marker] == 1).all()
    # every text token keeps its original mRoPE position, in order
    for b in range(ids.size(0)):
        keep = masked["attention_mask"][b].bool()
        kept = dropped["attention_mask"][b].bool()
        assert torch.equal(masked["position_ids"][:, b][:, keep], dropped["position_ids"][:, b][:, kept])
        assert torch.equal(ids[b][keep], dropped["input_ids"][b][kept])
    with torch.no_grad():
        h_masked = blind_hidden_states(model, ids, attention, mm, grids, t, drop=False)
        h_dropped = blind_hidden_states(model, ids, attention, mm, grids, t, drop=True)
    valid = attention[:, -t:].bool()
    assert torch.allclose(h_masked[valid], h_dropped[valid], atol=1e-5)
    lp_masked = blind_forward(model, ids, attention, mm, grids, t, drop=False)
    lp_dropped = blind_forward(model, ids, attention, mm, grids, t, drop=True)
    assert torch.allclose(lp_masked, lp_dropped, atol=1e-5) and (lp_dropped[valid] < 0).all()


def test_drop_columns_right_aligns_the_kept_columns():
    keep = torch.tensor([[False, True, False, True, True], [True, True, True, False, True]])
    values = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    assert drop_columns(keep, values, -1).tolist() == [[-1, 2, 4, 5], [6, 7, 8, 10]]
    stacked = torch.stack([values, values * 10])  # leading dims (mRoPE's 3) carried along
    assert drop_columns(keep, stacked, 0).tolist() == [[[0, 2, 4, 5], [6, 7, 8, 10]],
                                                       [[0, 20, 40, 50], [60, 70, 80, 100]]]


def test_full_kl_from_hidden_states_matches_the_full_logits(tiny, mixed):
    model, processor = tiny
    ids, attention, mm, grids, t = mixed
    pixels = processor.image_processor(images=[Image.new("RGB", (112, 112), c) for c in
                                               ("red", "blue", "green", "white")], return_tensors="pt")
    pos = mrope_position_ids(model, ids, attention, mm, grids)
    with torch.no_grad():
        h_image = completion_hidden_states(model, t, input_ids=ids, attention_mask=attention, position_ids=pos,
                                           pixel_values=pixels["pixel_values"], image_grid_thw=grids,
                                           mm_token_type_ids=mm)
        h_blind = blind_hidden_states(model, ids, attention, mm, grids, t)
        full_image = model(input_ids=ids, attention_mask=attention, pixel_values=pixels["pixel_values"],
                           image_grid_thw=grids, mm_token_type_ids=mm, logits_to_keep=t + 1).logits[:, :-1]
    head = model.get_output_embeddings()
    assert torch.allclose(head(h_image), full_image, atol=1e-5)  # the hidden states are the image pass's
    mask = attention[:, -t:]
    rows = []
    hook = head.register_forward_hook(lambda m, a, out: rows.append(a[0].shape[0]))
    try:
        kl = full_kl(h_image, h_blind, head, mask, temperature=0.7, chunk=4)
    finally:
        hook.remove()
    assert max(rows) <= 4 and sum(rows) == 2 * int(mask.sum())  # chunked, padding never projected
    pi, pb = torch.log_softmax(head(h_image) / 0.7, -1), torch.log_softmax(head(h_blind) / 0.7, -1)
    naive = (pi.exp() * (pi - pb)).sum(-1) * mask
    assert (kl >= 0).all() and (kl[~mask.bool()] == 0).all() and kl.max() > 1e-3
    assert torch.allclose(kl, naive, atol=1e-6)
