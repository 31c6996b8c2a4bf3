"""pgpo.models.shared_prefill (contract with transformers' generate): one prefill per distinct prompt, the same sampled
sequences and scores bit for bit; rows that differ in anything (tokens, pixels) are not merged."""

import pytest
import torch


@pytest.fixture(scope="module")
def repeated(tiny, tiny_data):
    """3 distinct prompts, each 4 times in a row (as TRL lays out G samples per prompt)."""
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts

    _, processor = tiny
    processor.tokenizer.padding_side = "left"
    records = [r for r in load_split(tiny_data / "train.jsonl")[:3] for _ in range(4)]
    return processor(images=load_images(records), text=prompt_texts(processor, records), padding=True,
                     return_tensors="pt")


@pytest.fixture(scope="module")
def models(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from pgpo.models.shared_prefill import install

    plain = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    shared = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    install(shared)
    install(shared)  # idempotent
    return plain, shared


def _generate(model, enc, rows_seen):
    def count(module, args, kwargs, out):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        rows_seen.append(int(grid.shape[0]))

    hook = model.model.visual.register_forward_hook(count, with_kwargs=True)
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            return model.generate(**enc, do_sample=True, max_new_tokens=10, output_scores=True,
                                  return_dict_in_generate=True)
    finally:
        hook.remove()


def test_sampling_is_bitwise_the_same_with_one_prefill_per_prompt(models, repeated):
    seen_plain, seen_shared = [], []
    a = _generate(models[0], repeated, seen_plain)
    b = _generate(models[1], repeated, seen_shared)
    assert seen_plain == [12] and seen_shared == [3]  # images encoded: every copy vs once per distinct prompt
    assert torch.equal(a.sequences, b.sequences)
    assert len(a.scores) == len(b.scores) and all(torch.equal(x, y) for x, y in zip(a.scores, b.scores))
    assert not all(torch.equal(a.sequences[0], a.sequences[i]) for i in range(1, 4))  # the copies did diverge


def test_a_batch_without_repeats_takes_generates_own_prefill(models, repeated):
    enc = {k: v for k, v in repeated.items()}
    keep = torch.tensor([0, 4, 8])
    enc["input_ids"], enc["attention_mask"] = enc["input_ids"][keep], enc["attention_mask"][keep]
    if "mm_token_type_ids" in enc:
        enc["mm_token_type_ids"] = enc["mm_token_type_ids"][keep]
    per = int(repeated["image_grid_thw"][0].prod())
    enc["pixel_values"] = torch.cat([repeated["pixel_values"][i * per:(i + 1) * per] for i in keep.tolist()])
    enc["image_grid_thw"] = repeated["image_grid_thw"][keep]
    seen_plain, seen_shared = [], []
    a = _generate(models[0], enc, seen_plain)
    b = _generate(models[1], enc, seen_shared)
    assert seen_plain == seen_shared == [3] and torch.equal(a.sequences, b.sequences)


def test_rows_that_differ_only_in_pixels_are_not_merged(tiny, repeated):
    from pgpo.models.shared_prefill import repeated_rows

    model_image_token = tiny[0].config.image_token_id
    ids, mask, px, grid = (repeated[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"))
    inverse = repeated_rows(ids, mask, px, grid, model_image_token)
    assert inverse.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    px = px.clone()
    per = int(grid[0].prod())
    px[per * 1 + 5, 0] += 1.0  # row 1's image differs in one value
    assert repeated_rows(ids, mask, px, grid, model_image_token).tolist() == [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    with pytest.raises(ValueError, match="image pad runs"):
        repeated_rows(ids, mask, px, grid[:-1], model_image_token)


def test_one_prompt_times_k_as_evaluation_batches_it(models, tiny, tiny_data):
    """pgpo_vlm's batches: one question's k samples (8 rows, 1 distinct): the same sequences and scores."""
    from pgpo.data.datasets import load_split
    from pgpo.tiny.sampling import load_images, prompt_texts

    _, processor = tiny
    records = load_split(tiny_data / "train.jsonl")[5:6] * 8
    enc = processor(images=load_images(records), text=prompt_texts(processor, records), padding=True,
                    return_tensors="pt")
    seen_plain, seen_shared = [], []
    a = _generate(models[0], enc, seen_plain)
    b = _generate(models[1], enc, seen_shared)
    assert (seen_plain, seen_shared) == ([8], [1])
    assert torch.equal(a.sequences, b.sequences) and all(torch.equal(x, y) for x, y in zip(a.scores, b.scores))
