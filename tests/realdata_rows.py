"""The real benchmark rows in tests/fixtures/realdata as the hub datasets' columns (shared by the data and the
evaluation tests: a module of its own, so neither test file imports the other)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from pgpo.evaluation import sources

ROOT = Path(__file__).parent / "fixtures" / "realdata"
IMAGE = str(ROOT / "placeholder.png")  # the real images are not copied: one placeholder stands for each
# the Vision Only query_cot MathVerse writes for a multiple-choice problem (the free-form one is in
# output_template_testmini.json): our constructed Vision Only row below carries it
VISION_ONLY_MC_QUERY = ("According to the question shown in the image, please first conduct reasoning, and then "
                        "answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.")


def _load(path: Path):
    return [json.loads(line) for line in path.open()] if path.suffix == ".jsonl" else json.loads(path.read_text())


def _ds(rows: list[dict], image_columns: dict[str, bool]) -> datasets.Dataset:
    """rows as a hub dataset: image_columns name -> whether it is a list of images (else one image)."""
    feats = {}
    for k, v in rows[0].items():
        if k in image_columns:
            feats[k] = datasets.Sequence(datasets.Image()) if image_columns[k] else datasets.Image()
        elif isinstance(v, list):
            feats[k] = datasets.Sequence(datasets.Value("string"))
        else:
            feats[k] = datasets.Value("string")
    return datasets.Dataset.from_list(rows, features=datasets.Features(feats))


# The published files as the hub datasets' columns (the column names sources.py reads):
def geo3k_rows(root=ROOT) -> list[dict]:  # hiyouga/geometry3k: problem with <image>, answer = the option's value
    out = []
    for p in sorted((root / "geo3k_intergps_examples").glob("*.data.json")):
        r = json.loads(p.read_text())
        out.append({"problem": "<image>" + r["problem_text"], "answer": r["choices"]["ABCD".index(r["answer"])],
                    "images": [IMAGE]})
    return out


def mmk12_rows(root=ROOT):
    return [{"id": r["id"], "question": r["question"], "answer": r["answer"], "image": IMAGE}
            for r in _load(root / "mmk12" / "k12.json")]


def mathverse_rows(root=ROOT):
    rows = _load(root / "mathverse" / "testmini_text_only.json")
    rows += _load(root / "mathverse" / "output_template_testmini.json")
    mc = next(r for r in rows if r["question_type"] == "multi-choice")
    rows.append({**mc, "sample_index": f"{mc['sample_index']}-vision-only", "problem_version": "Vision Only",
                 "question": "", "query_cot": VISION_ONLY_MC_QUERY})  # constructed (see the fixture README)
    keys = ("sample_index", "problem_version", "question", "answer", "question_type", "query_cot")
    return [{**{k: str(r[k]) for k in keys}, "image": IMAGE} for r in rows]


def dynamath_rows(root=ROOT):
    return [{"id": k, "question": r["question"], "ground_truth": str(r["answer"]), "image": r["image"],
             "decoded_image": IMAGE} for k, r in _load(root / "dynamath" / "trial1.json").items()]


def mathvision_rows(root=ROOT):
    return [{"id": str(r["id"]), "question": r["question"], "options": list(r["options"]),
             "answer": str(r["answer"]), "decoded_image": IMAGE} for r in _load(root / "mathvision" / "test.jsonl")]


def logicvista_rows(root=ROOT):
    return [{"id": k, "question": r["question"], "answer": r["answer"], "image": IMAGE}
            for k, r in _load(root / "logicvista" / "dataset.json").items()]


def mmmu_pro_rows(root=ROOT):
    return [{"id": r["id"], "options": r["options"], "answer": r["answer"], "image": IMAGE}
            for r in _load(root / "mmmu_pro" / "gpt-4o_vision_direct.jsonl")]


BENCHMARKS = {  # benchmark: (rows, process_docs, image columns)
    "geo3k": (geo3k_rows, sources.geo3k_docs, {"images": True}),
    "mmk12": (mmk12_rows, sources.mmk12_docs, {"image": False}),
    "mathverse": (mathverse_rows, sources.mathverse_mc_docs, {"image": False}),
    "mathverse_v": (mathverse_rows, sources.mathverse_v_docs, {"image": False}),
    "dynamath": (dynamath_rows, sources.dynamath_docs, {"decoded_image": False}),
    "mathvision": (mathvision_rows, sources.mathvision_docs, {"decoded_image": False}),
    "logicvista": (logicvista_rows, sources.logicvista_docs, {"image": False}),
    "mmmu_pro": (mmmu_pro_rows, sources.mmmu_pro_docs, {"image": False}),
}
