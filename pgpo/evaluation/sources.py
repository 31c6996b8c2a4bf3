"""From each paper benchmark's own columns to the canonical evaluation document (pgpo.evaluation.docs).

One `process_docs` function per benchmark, named in its task YAML (pgpo/lmms_tasks/pgpo_<name>.yaml), which
also holds the dataset id, config, split and revision. Subset filters are applied here, before any image is
decoded (filters read only text columns). Images are passed through undecoded (no re-encoding of thousands of
PNGs); lmms-eval decodes them when it asks for a question's visuals.
"""

from __future__ import annotations

import ast

import datasets

from pgpo.prompts import strip_image_tags

CANONICAL = datasets.Features({
    "id": datasets.Value("string"), "question": datasets.Value("string"), "answer": datasets.Value("string"),
    "choices": datasets.Sequence(datasets.Value("string")), "show_choices": datasets.Value("bool"),
    "images": datasets.Sequence(datasets.Image()),
})
# MathVerse versions whose diagram carries most of the information (PAPO / VPPO's "vision-centric" subset:
# 436 multiple-choice problems x 3 versions = 1,308 questions).
VISION_CENTRIC = ("Vision Intensive", "Vision Dominant", "Vision Only")


def _undecoded(ds: datasets.Dataset, columns: list[str]) -> datasets.Dataset:
    """Cast image columns to undecoded images; a column that holds no images (e.g. path strings) is an error."""
    from pgpo.data import DataError

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


def _canonical(ds: datasets.Dataset, row_fn, image_columns: list[str]) -> datasets.Dataset:
    ds = _undecoded(ds, image_columns)
    return ds.map(row_fn, with_indices=True, remove_columns=ds.column_names, features=CANONICAL)


def _row(i, question, answer, images, choices=(), show_choices=False, id_=None) -> dict:
    return {"id": str(id_ if id_ is not None else i), "question": strip_image_tags(str(question)),
            "answer": str(answer).strip(), "choices": [str(c) for c in choices], "show_choices": show_choices,
            "images": [im for im in (images if isinstance(images, list) else [images]) if im is not None]}


def geo3k_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """hiyouga/geometry3k test (601): `problem` (with an <image> tag), `images` (list), free-form `answer`."""
    return _canonical(ds, lambda r, i: _row(i, r["problem"], r["answer"], r["images"]), ["images"])


def mmk12_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """FanqingM/MMK12 test: `question` (options written inline), `image`, `answer` (letter or value)."""
    return _canonical(ds, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r.get("id")), ["image"])


def _mathverse(ds: datasets.Dataset, versions: tuple[str, ...] | None) -> datasets.Dataset:
    keep = ds.filter(lambda t, v: t == "multi-choice" and (versions is None or v in versions),
                     input_columns=["question_type", "problem_version"])
    return _canonical(keep, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r["sample_index"]),
                      ["image"])


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
                                            id_=r.get("id")), ["decoded_image"])


def mathvision_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """MathLLMs/MathVision test (3,040): `options` (list; empty = free-form), `decoded_image`, `answer`."""
    def row(r, i):
        options = list(r["options"] or [])
        return _row(i, r["question"], r["answer"], r["decoded_image"], options, bool(options), r.get("id"))
    return _canonical(ds, row, ["decoded_image"])


def logicvista_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """lscpku/LogicVista test (448): `question` (options inline), `image`, `answer` (letter(s), e.g. 'A, C')."""
    return _canonical(ds, lambda r, i: _row(i, r["question"], r["answer"], r["image"], id_=r.get("id")), ["image"])


def mmmu_pro_docs(ds: datasets.Dataset) -> datasets.Dataset:
    """MMMU/MMMU_Pro `vision` test (1,730): question and 10 options are inside the image; `options` (a Python
    list literal) grades option text against the letter `answer` but is not shown."""
    def row(r, i):
        options = r["options"] if isinstance(r["options"], list) else ast.literal_eval(r["options"])
        question = "Answer the multiple-choice question shown in the image."
        return _row(i, question, r["answer"], r["image"], options, False, r.get("id"))
    return _canonical(ds, row, ["image"])
