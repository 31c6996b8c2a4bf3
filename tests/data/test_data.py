"""On-disk data: schema, checksums, and clear errors naming file, row and field."""

import json
import shutil

import pytest

from pgpo.data.datasets import DataError, load_split, to_trl_dataset, verify_manifest


def _copy(tiny_data, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


def test_generated_data_is_complete_and_verified(tiny_data):
    verify_manifest(tiny_data)
    train = load_split(tiny_data / "train.jsonl")
    assert len(train) == 8 * 8 and {r.task for r in train} == {
        "count", "colour", "bars", "digit", "position", "shape", "polygon", "control"}
    for t in ("count", "control"):
        assert len(load_split(tiny_data / f"suite_{t}.jsonl")) == 4
    ds = to_trl_dataset(train[:4])
    assert set(ds.column_names) >= {"prompt", "images", "answer", "choices"}
    assert [im.size for im in ds[0]["images"]] == [(112, 112)]  # a list per row (TRL's multi-image column)


def _rewrite(path, row_index, **changes):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[row_index].update(changes)
    for k, v in changes.items():
        if v is None:
            rows[row_index].pop(k)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("change, message", [
    ({"answer": None}, r"train.jsonl:2: field 'answer' is missing"),
    ({"image": "images/train/nope.png"}, r"train.jsonl:2: field 'image' .*file not found"),
    ({"choices": "A"}, r"train.jsonl:2: field 'choices' must be a list"),
])
def test_bad_rows_are_named(tiny_data, tmp_path, change, message):
    root = _copy(tiny_data, tmp_path)
    _rewrite(root / "train.jsonl", 1, **change)
    with pytest.raises(DataError, match=message):
        load_split(root / "train.jsonl")


def test_corrupt_image_and_manifest_mismatch(tiny_data, tmp_path):
    root = _copy(tiny_data, tmp_path)
    row = json.loads((root / "train.jsonl").read_text().splitlines()[2])
    (root / row["image"]).write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"train.jsonl:3: field 'image'.*sha256 differs"):
        load_split(root / "train.jsonl")
    _rewrite(root / "train.jsonl", 2, image_sha256=None)
    with pytest.raises(DataError, match=r"train.jsonl:3: field 'image'.*not a readable image"):
        load_split(root / "train.jsonl")
    with pytest.raises(DataError, match=r"train.jsonl: missing or changed since .*MANIFEST.json was written"):
        verify_manifest(root)


def test_invalid_json_row(tiny_data, tmp_path):
    root = _copy(tiny_data, tmp_path)
    with open(root / "train.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"train.jsonl:65: not valid JSON"):
        load_split(root / "train.jsonl")
