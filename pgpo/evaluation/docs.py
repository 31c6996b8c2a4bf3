"""The canonical evaluation document and the lmms-eval hooks every `pgpo_` task shares.

Every benchmark is mapped (by its task's ``process_docs``) to one schema: ``id`` (str), ``question`` (str),
``answer`` (str: a letter for multiple choice, else the gold text), ``choices`` (list of option texts, [] for
free-form; they grade option text against the letter), ``show_choices`` (whether the prompt lists them: false
where the options are already in the question text or in the image) and ``images`` (PIL images or file paths).
The prompt is the training prompt (pgpo.data.prompts) and the grade is the training reward's grade (pgpo.rewards.scoring): no
drift between train and eval.

The tiny suites (pgpo make-data) are found by their tasks' own ``process_docs`` (tiny_suite_docs) when lmms-eval's
CLI runs them: in ``$PGPO_TINY_DATA``, else ``results/tiny/data`` under the current directory. ``pgpo evaluate``
validates the suite itself (benchmarks.tiny_inputs) and hands lmms-eval the canonical rows as a file instead
(PREPARED_SUITE); tiny_doc builds the same rows (tests/evaluation/test_lmms_cli.py compares the two paths' documents).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from pgpo.data.prompts import chat_messages, user_text
from pgpo.rewards.scoring import grade

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
    return chat_messages(doc_to_text(doc), [{"type": "image", "url": im} for im in doc_to_visual(doc)])


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


TINY_DATA_ENV = "PGPO_TINY_DATA"  # where lmms-eval's CLI finds the tiny suites (a `pgpo make-data --out` folder)
TINY_DATA_DEFAULT = "results/tiny/data"  # relative to the current directory: the repository root
# the task config keys that make a tiny task read the canonical file `pgpo evaluate` writes (benchmarks.tiny_inputs)
# instead of finding the suite itself
PREPARED_SUITE = {"dataset_path": "json", "dataset_kwargs": {}, "test_split": "test", "process_docs": None}


def _tiny_features():
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"), "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")), "show_choices": datasets.Value("bool"),
        "images": datasets.Sequence(datasets.Value("string"))})  # paths, as in the file `pgpo evaluate` writes


def tiny_doc(record) -> dict:
    """A tiny-suite record (pgpo.data.datasets.Record, image paths absolute) as a canonical document."""
    return {"id": record.id, "question": record.question, "answer": record.answer, "choices": list(record.choices),
            "show_choices": True, "images": list(record.images)}


def tiny_data_dir() -> Path:
    return Path(os.environ.get(TINY_DATA_ENV) or TINY_DATA_DEFAULT)


def tiny_suite_docs(suite: str):
    """The process_docs of task pgpo_tiny_<suite>: it ignores the stub dataset lmms-eval loads and returns the
    suite read from tiny_data_dir(), validated against the folder's MANIFEST, as canonical documents.

    A missing or bad suite raises SystemExit naming the path and the variable to set: lmms-eval's CLI catches
    every Exception of an evaluation (after retrying the dataset step for several seconds), logs it and exits 0
    unless --verbosity DEBUG; SystemExit passes through both."""

    def process_docs(stub):
        import datasets

        from pgpo.data.datasets import DataError, load_split, verify_manifest

        root = tiny_data_dir()
        source = root / f"suite_{suite}.jsonl"
        where = (f"{TINY_DATA_ENV}={os.environ[TINY_DATA_ENV]!r}" if os.environ.get(TINY_DATA_ENV) else
                 f"{TINY_DATA_ENV} is unset: {TINY_DATA_DEFAULT} under the current directory {Path.cwd()}")
        try:
            if not source.exists():
                raise DataError(f"{source.resolve()}: missing")
            verify_manifest(root)
            rows = [tiny_doc(r) for r in load_split(source)]
        except DataError as e:
            raise SystemExit(f"pgpo_tiny_{suite}: {e} ({where}). Create the suites with `pgpo make-data --out DIR` "
                             f"and set {TINY_DATA_ENV}=DIR, or run from the repository root") from None
        return datasets.Dataset.from_list(rows, features=_tiny_features())

    process_docs.__name__ = process_docs.__qualname__ = f"tiny_{suite}_docs"
    return process_docs
