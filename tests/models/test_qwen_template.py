"""The real Qwen2.5-VL tokenizer, chat template and processor files (tests/fixtures/qwen, see its README).

One record must give the same prompt string and the same token ids on every path: TRL's rollout during training,
the warm start / HF sampling, and both evaluation backends; the blind pass must mask exactly the vision span; and
the first-release preprocessor_config.json, which transformers 5 rejects, must load.
"""

import base64
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from pgpo.config.schema import REPO, load_method, load_train_config
from pgpo.data.datasets import Record, load_split, write_split
from pgpo.models.processor import ProcessorError, load_processor

FIXTURE = Path(__file__).parents[1] / "fixtures" / "qwen"
VISION_START, VISION_END, IMAGE_PAD, VISION_PAD, VIDEO_PAD = 151652, 151653, 151655, 151654, 151656
SMALL = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}  # <= 16 visual tokens an image: fast on 2 cores
PROCESSOR_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "chat_template.json",
                   "preprocessor_config.json")


def _image(w: int, h: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.fixture(scope="module")
def processor():
    return load_processor(FIXTURE, **SMALL)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Two training rows in the project's schema (one multiple choice), images larger than the SMALL budget."""
    items = [SimpleNamespace(task="t", question="How many sides?", answer="B", choices=["3", "4"],
                             image=_image(150, 100, 0), rationale=""),
             SimpleNamespace(task="t", question="What is the length of AB?", answer="5", choices=[],
                             image=_image(90, 130, 1), rationale="")]
    return write_split(items, tmp_path_factory.mktemp("split"), "train")


def test_transformers_rejects_the_first_release_preprocessor_config_and_load_processor_handles_it(tmp_path):
    from transformers import AutoProcessor

    assert json.loads((FIXTURE / "preprocessor_config.json").read_text())["image_processor_type"] == \
        "Qwen2_5_VLImageProcessor"
    # the failure being worked around (if transformers ever accepts the file, the workaround can go)
    with pytest.raises(ValueError, match="Unrecognized image processor"):
        AutoProcessor.from_pretrained(FIXTURE)
    p = load_processor(FIXTURE)
    assert (type(p).__name__, type(p.image_processor).__name__) == ("Qwen2_5_VLProcessor", "Qwen2VLImageProcessor")
    # the file's own budget, unless overridden
    assert (p.image_processor.size.shortest_edge, p.image_processor.size.longest_edge) == (3136, 12845056)
    assert load_processor(FIXTURE, **SMALL).image_processor.size.longest_edge == 112 * 112
    assert p.chat_template == json.loads((FIXTURE / "chat_template.json").read_text())["chat_template"]
    # a checkpoint saved from it names the right class: stock transformers (and vLLM) load it
    p.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert type(again.image_processor).__name__ == "Qwen2VLImageProcessor" and again.chat_template == p.chat_template


def test_an_unknown_image_processor_type_is_refused_naming_the_fix(tmp_path):
    for name in PROCESSOR_FILES + ("config.json",):
        shutil.copy(FIXTURE / name, tmp_path / name)
    raw = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**raw, "image_processor_type": "QwenNextVLIP"}))
    with pytest.raises(ProcessorError, match=r"preprocessor_config.json: .*'QwenNextVLIP'.*Qwen2VLImageProcessor"):
        load_processor(tmp_path)


def test_the_real_vocabulary_and_special_token_ids(processor):
    from transformers import Qwen2_5_VLConfig

    tok = processor.tokenizer
    assert len(tok) == 151665 and tok("Hello world")["input_ids"] == [9707, 1879]
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 151645,
                                                                                  "<|endoftext|>", 151643)
    assert tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]) == \
        [VISION_START, VISION_END, IMAGE_PAD]
    for name in ("config.json", "config_3b.json"):  # the 7B (later) and 3B (first release) model configs agree
        cfg = Qwen2_5_VLConfig.from_json_file(FIXTURE / name)
        assert (cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.image_token_id) == \
            (VISION_START, VISION_END, IMAGE_PAD), name


@pytest.fixture(scope="module")
def trainer(split, tmp_path_factory):
    """A real PGPOTrainer (build_trainer) on a one-layer Qwen2.5-VL with the real vocabulary, in a directory laid
    out like the first hub release (its tokenizer files, chat_template.json and preprocessor_config.json)."""
    from pgpo.models.processor import load_processor as load
    from pgpo.models.families import family_named
    from pgpo.tiny.model import CHAT_TEMPLATE, TinyModelConfig
    from pgpo.training.run import build_trainer

    model_dir = tmp_path_factory.mktemp("qwen_tiny")
    size = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                           vision_depth=1, vision_hidden=32, vision_heads=2)
    model, _ = family_named("qwen2_5_vl").build_tiny(size, load(FIXTURE).tokenizer, CHAT_TEMPLATE)
    model.save_pretrained(model_dir)
    for name in PROCESSOR_FILES:
        shutil.copy(FIXTURE / name, model_dir / name)
    cfg = load_train_config(REPO / "workflows/config/train/tiny.yaml", {
        "model": {"path": str(model_dir)}, "data": {"train": str(split)}, "micro_batch": 4, "max_steps": 1,
        "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 2}})
    return build_trainer(cfg, load_method("grpo"), tmp_path_factory.mktemp("out"))


def _unpadded(ids, mask) -> list[int]:
    return ids[mask.bool()].tolist()


def _openai_images(messages) -> list[Image.Image]:
    """The images vLLM receives: lmms-eval's base64 data URLs, decoded."""
    urls = [c["image_url"]["url"] for m in messages for c in m["content"] if c["type"] == "image_url"]
    return [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB") for u in urls]


@pytest.mark.parametrize("row", [0, 1])
def test_every_path_renders_the_same_prompt_and_token_ids(trainer, split, tmp_path, row):
    from lmms_eval.protocol import ChatMessages
    from trl import GRPOTrainer
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    from pgpo.evaluation.docs import doc_to_messages, doc_to_text, doc_to_visual
    from pgpo.evaluation.lmms_model import PGPOVisionLanguageModel
    from pgpo.evaluation.vllm_prompt import vllm_prompt
    from pgpo.data.prompts import user_text
    from pgpo.tiny.sampling import load_images, prompt_texts

    record: Record = load_split(split)[row]
    # training: TRL's own rollout of the dataset row (prompt ids it generates from; text it re-encodes for the loss)
    example = trainer.train_dataset[row]
    out = GRPOTrainer._generate_and_score_completions(trainer, [example] * trainer.num_generations)
    train_ids = _unpadded(out["prompt_ids"][0], out["prompt_mask"][0])
    conversation = prepare_multimodal_messages(example["prompt"], images=example["images"])
    train_text = apply_chat_template({"prompt": conversation}, trainer.processing_class)["prompt"]
    assert train_text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                          "<|vision_start|><|image_pad|><|vision_end|>" + user_text(record.question, record.choices)
                          + "<|im_end|>\n<|im_start|>assistant\n")

    # the evaluation and warm-start paths load the checkpoint the trainer writes
    trainer.processing_class.save_pretrained(tmp_path)
    processor = load_processor(tmp_path)
    doc = {"question": record.question, "answer": record.answer, "choices": record.choices, "show_choices": True,
           "images": [record.image]}  # as benchmarks.tiny_inputs writes a tiny suite
    openai = ChatMessages(messages=doc_to_messages(doc)).to_openai_messages(video_kwargs={})
    texts = {
        "warm start / HF sampling": (prompt_texts(processor, [record])[0], load_images([record])),
        "pgpo_vlm": (PGPOVisionLanguageModel._prompt(SimpleNamespace(processor=processor), doc_to_text(doc), 1),
                     doc_to_visual(doc)),
        "vllm": (vllm_prompt(processor, doc), _openai_images(openai)),
    }
    reference = processor(text=[train_text], images=example["images"], return_tensors="pt")
    assert _unpadded(reference["input_ids"][0], reference["attention_mask"][0]) == train_ids
    assert train_ids.count(IMAGE_PAD) == int(out["image_grid_thw"][0].prod()) // 4 > 0
    for path, (text, images) in texts.items():
        assert text == train_text, path
        enc = processor(text=[text], images=images, return_tensors="pt")
        assert enc["input_ids"][0].tolist() == train_ids, path
        assert torch.equal(enc["image_grid_thw"], out["image_grid_thw"][:1]), path
        assert torch.allclose(enc["pixel_values"], reference["pixel_values"]), path


@pytest.mark.parametrize("n_images", [1, 2])
def test_the_blind_pass_masks_exactly_the_vision_span(processor, n_images):
    from transformers import Qwen2_5_VLConfig
    from trl.data_utils import prepare_multimodal_messages

    from pgpo.methods.dependency import visual_span_mask
    from pgpo.data.prompts import conversation

    cfg = Qwen2_5_VLConfig.from_json_file(FIXTURE / "config.json")
    images = [_image(150, 100, 0), _image(60, 200, 1)][:n_images]
    prompts = [prepare_multimodal_messages(conversation("Compare the figures."), images=images),
               prepare_multimodal_messages(conversation("A longer question, so the first row is left-padded."),
                                           images=images)]
    processor.tokenizer.padding_side = "left"
    texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    enc = processor(text=texts, images=images * 2, padding=True, return_tensors="pt")
    mask = visual_span_mask(enc["input_ids"], enc["mm_token_type_ids"], cfg.vision_start_token_id,
                            cfg.vision_end_token_id)
    pads = [int(g.prod()) // 4 for g in enc["image_grid_thw"][:n_images]]
    expected = [t for n in pads for t in [VISION_START] + [IMAGE_PAD] * n + [VISION_END]]
    for ids, attn, m in zip(enc["input_ids"], enc["attention_mask"], mask):
        assert ids[m].tolist() == expected
        assert not (m & ~attn.bool()).any()  # padding is never part of the span
        outside = set(ids[~m].tolist())
        assert not outside & {VISION_START, VISION_END, IMAGE_PAD, VISION_PAD, VIDEO_PAD}
        # one contiguous run (the template writes the image blocks back to back), so the mask edges are two
        assert int((m[1:] != m[:-1]).sum()) == 2
