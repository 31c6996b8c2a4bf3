"""The canonical evaluation document and the lmms-eval hooks every `pgpo_` task shares.

Every benchmark is mapped (by its task's ``process_docs``) to one schema: ``id`` (str), ``question`` (str),
``answer`` (str: a letter for multiple choice, else the gold text), ``choices`` (list of option texts, [] for
free-form; they grade option text against the letter), ``show_choices`` (whether the prompt lists them: false
where the options are already in the question text or in the image) and ``images`` (PIL images or file paths). The prompt is the training prompt
(pgpo.prompts) and the grade is the training reward's grade (pgpo.scoring): no drift between train and eval.
"""

from __future__ import annotations

from PIL import Image

from pgpo.prompts import SYSTEM_PROMPT, user_text
from pgpo.scoring import grade

METRIC = "avg_at_k"  # the only metric our tasks report; anything else in lmms-eval's output fails the judge guard
FAILED_PREFIX = "[pgpo: generation failed] "  # a response the model class could not produce (counted, never scored)


def _image(x) -> Image.Image:
    if isinstance(x, Image.Image):
        return x.convert("RGB")
    if isinstance(x, dict) and x.get("bytes"):  # datasets' Image feature, undecoded
        import io
        return Image.open(io.BytesIO(x["bytes"])).convert("RGB")
    path = x.get("path") if isinstance(x, dict) else x
    return Image.open(path).convert("RGB")


def doc_to_visual(doc) -> list[Image.Image]:
    """The question's images, RGB, in order."""
    return [_image(x) for x in doc["images"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None) -> str:
    """The user turn's text exactly as in training: question, lettered options, instruction."""
    shown = list(doc["choices"]) if doc.get("show_choices", True) else []
    return user_text(doc["question"], shown or None)


def doc_to_messages(doc, lmms_eval_specific_kwargs=None) -> list[dict]:
    """Chat form for lmms-eval's chat backends (vLLM): system prompt, then images before the text, as in training."""
    content = [{"type": "image", "url": im} for im in doc_to_visual(doc)]
    content.append({"type": "text", "text": doc_to_text(doc)})
    return [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": content}]


def doc_to_target(doc) -> str:
    return doc["answer"]


def process_results(doc, results) -> dict:
    """lmms-eval's own per-question score: mean grade over the k responses (take_first_k filter).

    Only a cross-check: the reported numbers come from `pgpo score`, which re-grades the logged samples."""
    responses = results[0] if results and isinstance(results[0], list) else results
    choices = list(doc["choices"]) or None
    try:
        scores = [0.0 if r.startswith(FAILED_PREFIX) else grade(r, doc["answer"], choices) for r in responses]
    except ValueError:  # a gold answer naming no option: `pgpo score` lists it; here it must not stop the run
        scores = [0.0]
    return {METRIC: sum(scores) / len(scores)}
