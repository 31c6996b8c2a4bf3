"""From each paper benchmark's own columns to the canonical evaluation document (pgpo.evaluation.docs).

One `process_docs` function per benchmark, named in its task YAML (pgpo/lmms_tasks/pgpo_<name>.yaml), which
also holds the dataset id, config, split and revision. Subset filters are applied here, before any image is
decoded (filters read only text columns). Images are passed through undecoded (no re-encoding of thousands of
PNGs); lmms-eval decodes them when it asks for a question's visuals.

Rows that cannot be asked are excluded by a documented per-benchmark rule (EXCLUSION_RULES), never dropped
silently: each call records the excluded ids and their rule in EXCLUDED[benchmark] (`pgpo evaluate` writes them
into the samples' meta.json) and the task YAML's `expected_questions` is the count after exclusions.

Questions that live in the image (MathVerse Vision Only: `question == ""`; MathVision 528: only `<image1>`) are
asked with MathVerse's own wording (its `query_cot` for Vision Only opens "According to the question shown in the
image"), without its answer-format clause, which the training instruction replaces: QUESTION_IN_IMAGE.
MathVision options that carry no text (every option is its own letter, "A".."E", or an image tag `<image2>`..)
are not listed as "A. A" or "A. <image2>": the prompt says the options are in the image (OPTIONS_IN_IMAGE) and
the options grade as their letters.
"""

from __future__ import annotations

import ast
import re

import datasets

from pgpo.data.prompts import IMAGE_TAG, strip_image_tags

CANONICAL = datasets.Features({
    "id": datasets.Value("string"), "question": datasets.Value("string"), "answer": datasets.Value("string"),
    "choices": datasets.Sequence(datasets.Value("string")), "show_choices": datasets.Value("bool"),
    "images": datasets.Sequence(datasets.Image()),
})
# MathVerse versions whose diagram carries most of the information (PAPO / VPPO's "vision-centric" subset:
# 436 multiple-choice problems x 3 versions = 1,308 questions).
VISION_CENTRIC = ("Vision Intensive", "Vision Dominant", "Vision Only")
# MathVerse's Vision Only query_cot: "According to the question shown in the image, please first conduct
# reasoning, and then answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
QUESTION_IN_IMAGE = "According to the question shown in the image, answer the question."
OPTIONS_IN_IMAGE = "The options are shown in the image; answer with the option letter."
MAX_OPTIONS = 26  # option letters A..Z (prompt and grader)

# benchmark -> the rule excluding rows that cannot be asked (ids and rules of the last mapping: EXCLUDED)
EXCLUSION_RULES = {
    "logicvista": "empty question and empty gold answer (v1_382 in LogicVista's dataset.json; PAPO's copy "
                  "has 447 rows without it)",
}
NO_GOLD = "empty gold answer"
EXCLUDED: dict[str, list[dict]] = {}


def _undecoded(ds: datasets.Dataset, columns: list[str]) -> datasets.Dataset:
    """Cast image columns to undecoded images; a column that holds no images (e.g. path strings) is an error."""
    from pgpo.data.datasets import DataError

    feats = ds.features.copy()
    for c in columns:
        f = feats.get(c)
        inner = getattr(f, "feature", None)
        if isinstance(f, datasets.Image):
            feats[c] = datasets.Image(decode=False)
        elif isinstance(inner, datasets.Image):
            feats[c] = datasets.Sequence(datasets.Image(decode=False))
        else:
            raise DataError(f"{ds.info.dataset_name or 'dataset'}: column {c!r} should hold images, found {f} "
                            f"(columns: {sorted(ds.features)}); the dataset layout changed, check its revision")
    return ds.cast(feats)


def _canonical(ds: datasets.Dataset, row_fn, image_columns: list[str], benchmark: str | None = None,
               exclude=None) -> datasets.Dataset:
    """Map every row with row_fn; with `exclude` (row's text columns -> rule or None) rows whose rule fires are
    left out and recorded, id and rule, in EXCLUDED[benchmark]."""
    if exclude is not None:
        text_cols = [c for c in ds.column_names if c not in image_columns]
        keep, out = [], []
        for i, r in enumerate(ds.select_columns(text_cols)):
            rule = exclude(r)
            if rule:
                out.append({"id": str(r.get("id", r.get("sample_index", i))), "index": i, "rule": rule})
            else:
                keep.append(i)
        EXCLUDED[benchmark] = out
        if out:
            ds = ds.select(keep)
    ds = _undecoded(ds, image_columns)
    return ds.map(row_fn, with_indices=True, remove_columns=ds.column_names, features=CANONICAL)


def _no_gold(answer_column: str):
    return lambda r: NO_GOLD if not str(r[answer_column] or "").strip() else None


def _row(i, question, answer, images, choices=(), show_choices=False, id_=None, in_image=None) -> dict:
    """A canonical doc. A question that is empty once image tags are stripped is asked as `in_image` (the
    question is in the image) where the benchmark says so; elsewhere it is an error naming the row."""
    from pgpo.data.datasets import DataError

    text = strip_image_tags(str(question or ""))
    rid = str(id_ if id_ is not None else i)
    if not text:
        if in_image is None:
            raise DataError(f"row {i} (id {rid!r}): empty question (field 'question' is {question!r})")
        text = in_image
    if len(choices) > MAX_OPTIONS:
        raise DataError(f"row {i} (id {rid!r}): {len(choices)} options, more than the {MAX_OPTIONS} letters A-Z")
    return {"id": rid, "question": text,
            "answer": str(answer).strip(), "choices": [str(c) for c in choices], "show_choices": show_choices,
            "images": [im for im in (images if isinstance(images, list) else [images]) if im is not None]}


def geo3k_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """hiyouga/geometry3k test (601): `problem` (with an <image> tag), `images` (list), free-form `answer`."""
    return _canonical(ds, lambda r, i: _row(i, r["problem"], r["answer"], r["images"]), ["images"], "geo3k",
                      _no_gold("answer"))


def mmk12_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """FanqingM/MMK12 test: `question` (options written inline), `image`, `answer` (letter or value)."""
    return _canonical(ds, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r.get("id")), ["image"],
                      "mmk12", _no_gold("answer"))


def _mathverse(ds: datasets.Dataset, versions: tuple[str, ...] | None) -> datasets.Dataset:
    keep = ds.filter(lambda t, v: t == "multi-choice" and (versions is None or v in versions),
                     input_columns=["question_type", "problem_version"])
    # Vision Only rows have question == "": the question is in the diagram (MathVerse's query_cot says so)
    return _canonical(keep, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r["sample_index"],
                                              in_image=QUESTION_IN_IMAGE), ["image"],
                      "mathverse" if versions is None else "mathverse_v", _no_gold("answer"))


def mathverse_mc_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """AI4Math/MathVerse testmini, multiple-choice questions of all five versions (PAPO: 2,180)."""
    return _mathverse(ds, None)


def mathverse_v_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """AI4Math/MathVerse testmini, multiple choice, vision-centric versions only (1,308)."""
    return _mathverse(ds, VISION_CENTRIC)


def dynamath_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """DynaMath/DynaMath_Sample sample_variant1 (501): `question` (options inline for multiple choice),
    `decoded_image` (`image` is only a path string), `ground_truth` (letter, number or expression)."""
    return _canonical(ds, lambda r, i: _row(i, r["question"], r["ground_truth"], r["decoded_image"],
                                            id_=r.get("id")), ["decoded_image"], "dynamath",
                      _no_gold("ground_truth"))


def mathvision_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """MathLLMs/MathVision test (3,040): `options` (list; empty = free-form), `decoded_image`, `answer`."""
    def row(r, i):
        options = list(r["options"] or [])
        question, shown = r["question"], bool(options)
        if options and _textless(options):  # "A. A" / "A. <image2>": say the options are in the image instead
            options, shown = [chr(ord("A") + k) for k in range(len(options))], False
            question = f"{strip_image_tags(str(question or '')) or QUESTION_IN_IMAGE}\n{OPTIONS_IN_IMAGE}"
        return _row(i, question, r["answer"], r["decoded_image"], options, shown, r.get("id"),
                    in_image=QUESTION_IN_IMAGE)  # id 528: the question is only <image1>
    return _canonical(ds, row, ["decoded_image"], "mathvision", _no_gold("answer"))


def _textless(options: list) -> bool:
    """Options that carry no text of their own: each is its own letter (A..E) or an image tag."""
    return all(str(o).strip() == chr(ord("A") + k) or re.fullmatch(IMAGE_TAG, str(o).strip())
               for k, o in enumerate(options))


def logicvista_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """lscpku/LogicVista test (448): `question` (options inline), `image`, `answer` (letter(s), e.g. 'A, C')."""
    def rule(r):
        empty_q = not strip_image_tags(str(r["question"] or ""))
        empty_a = not str(r["answer"] or "").strip()
        return EXCLUSION_RULES["logicvista"] if empty_q and empty_a else NO_GOLD if empty_a else None
    return _canonical(ds, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r.get("id")), ["image"],
                      "logicvista", rule)


def mmmu_pro_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """MMMU/MMMU_Pro `vision` test (1,730): question and 10 options are inside the image; `options` (a Python
    list literal) grades option text against the letter `answer` but is not shown."""
    def row(r, i):
        options = mmmu_pro_options(r["options"], r.get("id", i))
        question = "Answer the multiple-choice question shown in the image."
        return _row(i, question, r["answer"], r["image"], options, False, r.get("id"))
    return _canonical(ds, row, ["image"], "mmmu_pro", _no_gold("answer"))


def mmmu_pro_options(raw, row_id) -> list[str]:
    """MMMU-Pro's `options`: a Python list literal of option texts. One row (validation_Accounting_29) nests
    the list once more (`[['A', 'B', 'Not enough information']]`): a single inner list is the options."""
    from pgpo.data.datasets import DataError

    try:
        options = raw if isinstance(raw, list) else ast.literal_eval(raw)
    except (ValueError, SyntaxError) as e:
        raise DataError(f"mmmu_pro row {row_id!r}: field 'options' is not a Python list literal ({e}): "
                        f"{str(raw)[:200]!r}") from None
    if len(options) == 1 and isinstance(options[0], list):
        options = options[0]
    if not isinstance(options, list) or any(isinstance(o, (list, dict)) for o in options):
        raise DataError(f"mmmu_pro row {row_id!r}: field 'options' should be a list of option texts, "
                        f"found {str(raw)[:200]!r}")
    return [str(o) for o in options]
