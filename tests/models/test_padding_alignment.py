"""Padding direction and the multimodal token types (TRL #5785): in a mixed-length batch (left-padded prompts,
one or two images of different sizes a row) the image marks TRL, dynamic sampling's merge and the blind view use
sit exactly on the image placeholder tokens; a processor padding on the right is refused, naming the issue."""

import dataclasses

import pytest
import torch
from PIL import Image

from pgpo.config.schema import REPO, load_method, load_train_config
from pgpo.models.vision_tokens import misaligned_visual_rows

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 9, 10, 12, 13  # the tiny tokenizer (tests/models/test_vision_tokens.py)


def test_misaligned_rows_are_named():
    ids = torch.tensor([[0, 0, 9, 12, 12, 10, 5], [9, 12, 12, 12, 12, 10, 5]])
    grid = torch.tensor([[1, 2, 4], [1, 4, 4]])  # 2 and 4 visual tokens (merge 2)
    aligned = (ids == 12).long()
    completion = torch.zeros(2, 3, dtype=torch.long)
    mm = torch.cat([aligned, completion], 1)
    assert misaligned_visual_rows(ids, mm, grid, [1, 1], IMAGE_PAD, VIDEO_PAD, 2) == []
    right_padded = torch.cat([torch.tensor([[0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 0, 0]]), completion], 1)
    assert misaligned_visual_rows(ids, right_padded, grid, [1, 1], IMAGE_PAD, VIDEO_PAD, 2) == [
        "row 0: mm_token_type_ids mark 2 prompt positions, 2 of them off the 2 image placeholder tokens"]
    assert misaligned_visual_rows(ids, mm, grid.flip(0), [1, 1], IMAGE_PAD, VIDEO_PAD, 2) == [
        "row 0: 2 image placeholder tokens for 1 image(s) of 4 visual tokens",
        "row 1: 4 image placeholder tokens for 1 image(s) of 2 visual tokens"]
    marked = mm.clone()
    marked[1, -1] = 1
    assert misaligned_visual_rows(ids, marked, grid, [1, 1], IMAGE_PAD, VIDEO_PAD, 2) == [
        "row 1: mm_token_type_ids mark completion tokens as visual"]


@pytest.fixture(scope="module")
def trainer(tiny_dir, tiny_data, tmp_path_factory):
    from pgpo.training.run import build_trainer

    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(tiny_data / "train.jsonl")},
           "rollout": {"prompts_per_step": 3, "update_prompts": 3, "num_generations": 2, "max_completion_length": 8,
                       "max_images": 2},
           "micro_batch": 6, "max_steps": 1, "save_steps": 100}
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", raw)
    t = build_trainer(cfg, load_method("pgpo"), tmp_path_factory.mktemp("padding"))
    t.model.train()
    return t


@pytest.fixture(scope="module")
def mixed_rows(tiny_data, tmp_path_factory):
    """Two batches of 3 prompts x 2: different tasks (text lengths), one or two images, two image sizes."""
    from pgpo.data.datasets import load_split, to_trl_dataset

    records = load_split(tiny_data / "train.jsonl")
    small = tmp_path_factory.mktemp("images") / "small.png"
    Image.open(records[5].images[0]).resize((56, 112)).save(small)  # 18 visual tokens instead of 16
    two = lambda r: dataclasses.replace(r, images=(r.images[0], str(small)))  # noqa: E731
    first = to_trl_dataset([records[0], two(records[1]), records[2]])
    second = to_trl_dataset([two(records[3]), records[4], dataclasses.replace(records[6], images=(str(small),))])
    return [[ds[i] for i in range(3) for _ in range(2)] for ds in (first, second)]


def _check_independently(out):
    """Left padding, image marks == image pads, one contiguous <|vision_start|> pads <|vision_end|> run per image,
    and each row's pads == the visual tokens of its own images."""
    ids, mask, mm = out["prompt_ids"], out["prompt_mask"], out["mm_token_type_ids"]
    width = ids.size(1)
    tokens = (out["image_grid_thw"].prod(-1) // 4).tolist()
    start = 0
    for row, n in enumerate(out["num_images"]):
        real = int(mask[row].sum())
        assert mask[row, width - real:].all() and not mask[row, :width - real].any()  # left-padded
        assert torch.equal(mm[row, :width] == 1, ids[row] == IMAGE_PAD) and not mm[row, width:].any()
        runs, inside, count = [], False, 0
        for t in ids[row].tolist():
            if t == VISION_START:
                inside, count = True, 0
            elif t == VISION_END:
                runs.append(count)
                inside = False
            elif inside:
                assert t == IMAGE_PAD
                count += 1
        assert runs == tokens[start:start + n], (row, runs, tokens[start:start + n])
        start += n
    return [int((ids[r] == IMAGE_PAD).sum()) for r in range(ids.size(0))]


@pytest.mark.slow
def test_a_mixed_batch_keeps_image_marks_on_image_tokens_through_merge_and_blind_view(trainer, mixed_rows):
    from pgpo.methods.dependency import visual_span_mask
    from pgpo.models.blind_sequence import blind_inputs
    from pgpo.training.dynamic_sampling import merge_rows

    outs = [trainer._scored_rollout(rows, "train")[0] for rows in mixed_rows]  # as dynamic sampling rolls out
    for out, rows in zip(outs, mixed_rows):
        out["rows"] = rows
    assert _check_independently(outs[0]) == [16, 16, 34, 34, 16, 16]
    assert _check_independently(outs[1]) == [34, 34, 16, 16, 18, 18]
    assert outs[0]["prompt_ids"].size(1) != outs[1]["prompt_ids"].size(1)  # merging re-pads
    merged = merge_rows(outs, [(1, 0), (0, 3), (1, 5), (0, 0)], trainer.pad_token_id)
    assert _check_independently(merged) == [34, 34, 18, 16]
    # the blind view's visual span is exactly the markers and pads; dropping it leaves no visual token
    ids = torch.cat([merged["prompt_ids"], merged["completion_ids"]], 1)
    attention = torch.cat([merged["prompt_mask"], merged["completion_mask"]], 1)
    span = visual_span_mask(ids, merged["mm_token_type_ids"], VISION_START, VISION_END)
    width = merged["prompt_ids"].size(1)
    is_visual = torch.isin(ids[:, :width], torch.tensor([VISION_START, VISION_END, IMAGE_PAD]))
    assert torch.equal(span[:, :width], is_visual)
    blind = blind_inputs(trainer.model, ids, attention, merged["mm_token_type_ids"], merged["image_grid_thw"],
                         merged["completion_ids"].size(1))
    kept = blind["input_ids"][:, :-merged["completion_ids"].size(1)][blind["attention_mask"][:, :-merged[
        "completion_ids"].size(1)].bool()]
    assert not torch.isin(kept, torch.tensor([VISION_START, VISION_END, IMAGE_PAD])).any()
    # and the trainer's own generation step (rollout, check, blind pass, shaping) runs on such a batch
    shaped = trainer.generation_step(mixed_rows[1])
    assert shaped["prompt_ids"].size(0) == 6


@pytest.mark.slow
def test_a_processor_padding_on_the_right_is_refused_naming_trl_5785(trainer, mixed_rows):
    tokenizer = trainer.processing_class.tokenizer
    tokenizer.padding_side = "right"
    try:
        out = trainer.rollout(mixed_rows[0])  # TRL itself raises nothing: the corruption is silent
        problems = misaligned_visual_rows(out["prompt_ids"], out["mm_token_type_ids"], out["image_grid_thw"],
                                          out["num_images"], IMAGE_PAD, VIDEO_PAD, 2)
        assert problems and all("off the" in p for p in problems), problems
        with pytest.raises(RuntimeError, match=r"TRL #5785.*padding_side = 'left'"):
            trainer.generation_step(mixed_rows[0])
    finally:
        tokenizer.padding_side = "left"


def test_the_gpu_smoke_padding_check_passes_and_sees_right_padding(tiny, tiny_data):
    from pgpo.diagnostics.known_bugs import padding_check

    _, processor = tiny
    assert padding_check(processor, tiny_data) == "8 prompts of 5 lengths aligned; right padding flagged in 7"
    assert processor.tokenizer.padding_side == "left"
