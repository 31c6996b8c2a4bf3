"""On-disk datasets in the project's schema, with checksums and validation.

A split is ``<name>.jsonl`` (one problem a row: id, task, question, answer, choices, image, image_sha256) beside
an ``images/`` folder; ``MANIFEST.json`` holds the sha256 of every split file. A row with several images (ViRL39K)
has ``images`` / ``images_sha256`` (lists, in the order the images are shown) instead of ``image`` /
``image_sha256``. Every bad row is reported with its file, row number and field; nothing is silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pgpo.util.atomic import write_atomic
from pgpo.util.errors import DataError, UserError, listed  # noqa: F401 (DataError: re-exported, its old home)
from pgpo.util.jsonfile import field, read_json
from pgpo.util.provenance import sha256_file

REQUIRED = ("id", "question", "answer")  # plus exactly one of `image` (a path) or `images` (a list of paths)


class DiskFull(UserError, OSError):
    """Writing an output failed for lack of space; the message names the disk and its free space."""


RESUME_FROM_CHECKPOINT = "rerun the same command: it resumes from the last complete checkpoint (an incomplete one is skipped)"


def disk_full_error(path: str | Path, error: BaseException, then: str = RESUME_FROM_CHECKPOINT) -> DiskFull | None:
    """A DiskFull naming the mount point and free space of `path` if `error` came from a full disk (ENOSPC
    anywhere in its chain, or almost no space left: torch.save reports a full disk only as 'file write failed'
    or 'basic_ios::clear: iostream error'); else None."""
    import errno
    import os
    import shutil

    chain, enospc = error, False
    while chain is not None:
        enospc |= isinstance(chain, OSError) and chain.errno == errno.ENOSPC
        chain = chain.__cause__ or chain.__context__
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    usage = shutil.disk_usage(path)
    if not enospc and usage.free >= 256 * 2**20:
        return None
    mount = path
    while not os.path.ismount(mount):
        mount = mount.parent
    return DiskFull(errno.ENOSPC, f"no space left on device: the disk mounted at {mount} has "
                    f"{usage.free / 2**20:.1f} MB free of {usage.total / 2**20:.0f} MB ({type(error).__name__}: "
                    f"{str(error)[:300]}). Free space, then {then}")


@dataclass(frozen=True)
class Record:
    """One problem: its image paths (absolute once loaded), in the order the prompt shows them.

    `images` also accepts one path (a str); `image` reads the only image of a single-image record and refuses a
    multi-image one, so code written for one image can never silently use just the first."""

    id: str
    task: str
    question: str
    answer: str
    choices: list[str]
    images: tuple[str, ...]
    rationale: str = ""

    def __post_init__(self):
        images = (self.images,) if isinstance(self.images, str) else tuple(self.images)
        if not images:
            raise ValueError(f"record {self.id!r}: no image")
        object.__setattr__(self, "images", images)

    @property
    def image(self) -> str:
        if len(self.images) != 1:
            raise ValueError(f"record {self.id!r} has {len(self.images)} images; read `.images`")
        return self.images[0]


def write_split(items, root: str | Path, name: str) -> Path:
    """Write items (objects with task/question/answer/choices/image(PIL)/rationale) as split `name` under root."""
    root = Path(root)
    (root / "images" / name).mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.jsonl"
    with open(path, "w") as f:
        for i, item in enumerate(items):
            rel = f"images/{name}/{i:06d}.png"
            item.image.save(root / rel, format="PNG")
            row = {"id": f"{name}-{i:06d}", "task": item.task, "question": item.question, "answer": item.answer,
                   "choices": item.choices or [], "image": rel, "image_sha256": sha256_file(root / rel),
                   "rationale": item.rationale}
            f.write(json.dumps(row) + "\n")
    return path


def write_manifest(root: str | Path, config: dict) -> Path:
    root = Path(root)
    files = {p.name: sha256_file(p) for p in sorted(root.glob("*.jsonl"))}
    out = root / "MANIFEST.json"
    write_atomic(out, json.dumps({"config": config, "files": files}, indent=2))
    return out


def _manifest_files(root: Path) -> dict[str, str]:
    manifest = root / "MANIFEST.json"
    return field(read_json(manifest, "the data's writer (`pgpo make-data`, `pgpo prepare`)", what="data manifest"),
                 manifest, "files")


def _changed(path: Path) -> DataError:
    return DataError(f"{path}: missing or changed since {path.parent / 'MANIFEST.json'} was written (sha256 "
                     "mismatch): a cut, edited or replaced split; restore it, or write the data again (the "
                     "workflow: delete the data folder and rerun it)")


def verify_manifest(root: str | Path) -> None:
    """Raise DataError if a split file is missing or differs from MANIFEST.json."""
    root = Path(root)
    manifest = root / "MANIFEST.json"
    if not manifest.exists():
        raise DataError(f"{manifest}: missing; regenerate the data with `pgpo make-data --out {root}`")
    for name, digest in _manifest_files(root).items():
        p = root / name
        if not p.exists() or sha256_file(p) != digest:
            raise _changed(p)


def verify_split(path: str | Path) -> None:
    """Raise DataError if the split is listed in a MANIFEST.json beside it and differs from it (a split cut at a
    line boundary reads as valid, fewer rows: only its hash tells). A split without a manifest (a user's own file)
    is taken as it is."""
    path = Path(path)
    if (path.parent / "MANIFEST.json").is_file():
        digest = _manifest_files(path.parent).get(path.name)
        if digest and sha256_file(path) != digest:
            raise _changed(path)


def load_split(path: str | Path, check_images: bool = True) -> list[Record]:
    """Read and validate a split; raise DataError listing every bad row as file:row: field: problem."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    problems, records, first_row = [], [], {}
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: a row must be a JSON object, not {type(row).__name__}")
            continue
        missing = [k for k in REQUIRED if row.get(k) is None or not str(row[k]).strip()]
        if missing:
            problems += [f"{where}: field '{k}' is missing, empty or only whitespace" for k in missing]
            continue
        # a list or number would become its Python string ("['3']") and the correct answer would score 0
        wrong = [k for k in ("question", "answer") if not isinstance(row[k], str)]
        if wrong:
            problems += [f"{where}: field '{k}' must be a JSON string, not {type(row[k]).__name__} "
                         f"({json.dumps(row[k])[:40]}); write it quoted" for k in wrong]
            continue
        rid = str(row["id"])
        if rid in first_row:
            problems.append(f"{where}: field 'id': {rid!r} already used on row {first_row[rid]}")
            continue
        first_row[rid] = n
        choices = row.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            problems.append(f"{where}: field 'choices' must be a list of strings")
            continue
        images, problem = _row_images(row)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        resolved = [(path.parent / rel).resolve() for _, rel, _ in images]
        bad = [f"{where}: field {field} ({rel}): {problem}" for (field, rel, sha), image in zip(images, resolved)
               if check_images and (problem := _image_problem(image, sha))]
        if bad:
            problems += bad
            continue
        records.append(Record(str(row["id"]), str(row.get("task", "")), str(row["question"]), str(row["answer"]),
                              choices, tuple(str(p) for p in resolved), str(row.get("rationale", ""))))
    if problems:
        raise DataError(listed(f"{path}: {len(problems)} bad row(s); fix or remove them (each below names its row "
                               "and field):", problems))
    if not records:
        raise DataError(f"{path}: no rows")
    return records


def _row_images(row: dict) -> tuple[list[tuple[str, str, str | None]], str | None]:
    """[(field name for messages, relative path, expected sha256 or None)] of a row, or a problem."""
    has_one = row.get("image") is not None and str(row["image"]).strip() != ""
    has_list = row.get("images") is not None
    if has_one and has_list:
        return [], "fields 'image' and 'images' are both set (one image: 'image'; several: 'images')"
    if has_one:
        if not isinstance(row["image"], str):
            return [], "field 'image' must be one path (several images go in 'images', a list)"
        return [("'image'", row["image"], row.get("image_sha256"))], None
    if not has_list:
        return [], "field 'image' is missing, empty or only whitespace (several images: 'images', a list)"
    images, shas = row["images"], row.get("images_sha256")
    if not isinstance(images, list) or not images or not all(isinstance(p, str) and p.strip() for p in images):
        return [], "field 'images' must be a non-empty list of paths"
    if shas is not None and (not isinstance(shas, list) or len(shas) != len(images)):
        return [], f"field 'images_sha256' must be a list of {len(images)} digests (one per image)"
    return [(f"'images'[{j}]", p, shas[j] if shas else None) for j, p in enumerate(images)], None


def _image_problem(image: Path, expected_sha: str | None) -> str | None:
    if not image.exists():
        return "file not found"
    if expected_sha and sha256_file(image) != expected_sha:
        return "sha256 differs from the one recorded in the split (corrupt or replaced)"
    try:
        with Image.open(image) as im:
            im.verify()
    except Exception as e:  # PIL raises several types for truncated or non-image files
        return f"not a readable image ({type(e).__name__}: {e})"
    return None


def to_trl_dataset(records: list[Record]):
    """A datasets.Dataset in TRL's VLM format: conversational `prompt`, `images` (a list per row, in prompt order:
    TRL puts one image block per entry before the text), plus answer/choices for rewards."""
    import datasets

    from pgpo.data.prompts import conversation

    features = datasets.Features({
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "images": datasets.Sequence(datasets.Image()), "answer": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")), "task": datasets.Value("string"),
        "id": datasets.Value("string"),
    })
    return datasets.Dataset.from_dict({
        "prompt": [conversation(r.question, r.choices) for r in records],
        "images": [list(r.images) for r in records], "answer": [r.answer for r in records],
        "choices": [r.choices for r in records], "task": [r.task for r in records], "id": [r.id for r in records],
    }, features=features)
