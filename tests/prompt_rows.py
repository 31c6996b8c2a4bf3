"""The tiny suite's first questions as an evaluation document and as the processor tokenises them (the prompt
bound's tests: tests/data/test_faults_inputs.py, tests/models/test_families.py)."""

from PIL import Image


def processed_prompts(model_dir, tiny_data, n: int = 3):
    """[(record, the document the bound reads, the processor's input ids [1, L])] of suite_bars' first n rows."""
    from transformers import AutoProcessor

    from pgpo.data.datasets import load_split
    from pgpo.data.prompts import chat_messages, user_text

    processor = AutoProcessor.from_pretrained(model_dir)
    out = []
    for record in load_split(tiny_data / "suite_bars.jsonl")[:n]:
        doc = {"id": record.id, "question": record.question, "choices": record.choices, "images": list(record.images)}
        text = processor.apply_chat_template([chat_messages(user_text(record.question, record.choices or None),
                                                            [None])], add_generation_prompt=True, tokenize=False)
        ids = processor(text=text, images=[Image.open(record.image).convert("RGB")], return_tensors="pt")["input_ids"]
        out.append((record, doc, ids))
    return processor, out
