"""ViRL39K (TIGER-Lab/ViRL39K, the paper's training set) -> the project's split schema: `pgpo prepare virl39k`.

Source (the published release, downloaded and unzipped into one folder): a table, ``39Krelease.parquet`` (jsonl
and json copies are read too), one problem a row: ``qid``, ``question`` (one ``<image>`` tag per image, usually
at the start), ``answer`` (``\\boxed{...}``), ``image`` (a list of paths relative to the release folder, e.g.
``images/Processed-xxx-0.jpg``, from images.zip), ``category``, ``source`` and pass-rate columns
(``PassRate_32BTrained``, ``PassRate_7BBase``, ...).

Output (pgpo.data.datasets's schema) under ``out``: ``train.jsonl`` (id = qid, task = category, question without the
``<image>`` tags, answer = the content of the box, choices [], ``images`` + ``images_sha256`` in tag order, and
the source's own fields: qid, source, pass_rates, source_images), ``images/`` (the source files copied byte for
byte under the same relative paths), ``MANIFEST.json`` (sha256 of train.jsonl; the source table, its sha256 and
revision; the counts) and ``prepare_report.json`` (every row that was not converted, by row and qid, with its
reason). Nothing is dropped silently: a row is converted or listed in the report.

Decisions:
- ``<image>`` tags are removed (pgpo.data.prompts.strip_image_tags, the function evaluation uses): TRL puts one image
  block per image before the text, so a tag left in the question would be a literal "<image>" in the training
  prompt and not in the evaluation prompt. The number of tags must equal the number of images (else the row is
  rejected: which image a tag meant is unknowable).
- Multiple choice: ViRL39K writes the options into the question text ("Choices: (A) ... (B) ...") and boxes the
  letter. They stay there and ``choices`` stays empty: the prompt is the source question verbatim (as the peer
  papers train on it), evaluation does the same for the benchmarks with inline options (MMK12, DynaMath,
  LogicVista, MathVerse: choices not re-rendered), and pgpo.rewards.scoring grades a letter gold without choices by the
  letters a response names ("B", "(B)", "B. 12"). Filling ``choices`` would mean parsing options out of free text
  in several formats and re-rendering them as conversation()'s "A. ..." lines, a prompt ViRL39K never had. Cost:
  a response that boxes an option's text instead of its letter scores 0 (as in EasyR1's rule-based grader).
- The answer must hold exactly one top-level ``\\boxed{}`` (nested braces matched); its content is the answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

from PIL import Image

from pgpo.data.datasets import DataError, sha256_file, write_manifest
from pgpo.data.prompts import IMAGE_TAG, matched_braces, strip_image_tags
from pgpo.util.atomic import write_atomic
from pgpo.util.provenance import short_digest

HUB_ID = "TIGER-Lab/ViRL39K"
RELEASE_TABLE = "39Krelease.parquet"
TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")
DOWNLOAD_HINT = (f"hf download --repo-type dataset {HUB_ID} --local-dir <src> (then unzip images.zip inside <src>)")


class Rejected(Exception):
    """A source row that cannot be converted: `reason` is a short code (counted), `detail` says what was seen."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# -- the answer -------------------------------------------------------------------------------------------------
def unbox(answer: str) -> str:
    """The content of the one top-level \\boxed{...} of a gold answer, nested braces matched ('\\boxed{\\frac{1}{2}}'
    -> '\\frac{1}{2}'). Raises Rejected if there is no complete box, several, or an empty one."""
    closes = matched_braces(answer)
    boxes, inside_until = [], -1
    for m in re.finditer(r"\\boxed\s*\{", answer):
        open_at = m.end() - 1
        if open_at <= inside_until:
            continue  # a box inside a box is part of the outer answer
        close = closes.get(open_at)
        if close is None:
            raise Rejected("no_boxed_answer", f"\\boxed{{ at column {m.start() + 1} is never closed: {answer[:80]!r}")
        boxes.append(answer[open_at + 1:close])
        inside_until = close
    if not boxes:
        raise Rejected("no_boxed_answer", f"answer has no \\boxed{{}}: {answer[:80]!r}")
    if len(boxes) > 1:
        raise Rejected("several_boxed_answers", f"{len(boxes)} top-level \\boxed{{}} in {answer[:80]!r}")
    if not boxes[0].strip():
        raise Rejected("empty_boxed_answer", f"the box is empty: {answer[:80]!r}")
    return boxes[0].strip()


# -- the source table -------------------------------------------------------------------------------------------
def find_table(src: Path) -> Path:
    """The source table: `src` itself if a file; else src/39Krelease.parquet, else the only table file in src."""
    if src.is_file():
        return src
    if not src.is_dir():
        raise DataError(f"{src}: no such ViRL39K folder or table; download it with: {DOWNLOAD_HINT}")
    if (src / RELEASE_TABLE).is_file():
        return src / RELEASE_TABLE
    tables = sorted(p for p in src.iterdir() if p.is_file() and p.suffix in TABLE_SUFFIXES)
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise DataError(f"{src}: no {RELEASE_TABLE} (nor any .parquet/.jsonl/.json table); download it with: "
                        f"{DOWNLOAD_HINT}")
    raise DataError(f"{src}: several tables {[p.name for p in tables]}; name one with --table")


def read_table(path: Path) -> list[tuple[int, dict | Rejected]]:
    """(row number from 1, row dict or Rejected) for every row of a .parquet, .jsonl or .json table (a JSON list
    of objects). A row that is not an object (or not JSON) is a Rejected row, not an error."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert the table to "
                            "jsonl") from None
        rows = list(enumerate(pq.read_table(path).to_pylist(), start=1))
    elif path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                rows.append((n, Rejected("bad_row", f"line {n} is not valid JSON ({e})")))
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json table must be a list of row objects, not {type(data).__name__}")
        rows = list(enumerate(data, start=1))
    else:
        raise DataError(f"{path}: unknown table format (expected one of {TABLE_SUFFIXES})")
    return [(n, r if isinstance(r, (dict, Rejected)) else
             Rejected("bad_row", f"a row must be an object, not {type(r).__name__}")) for n, r in rows]


def source_revision(table: Path, given: str | None) -> tuple[str | None, str]:
    """The dataset commit the table was downloaded at, and how it is known: from the Hugging Face cache path
    (.../snapshots/<commit>/), from `hf download --local-dir`'s metadata file, or as given. A given revision that
    contradicts the detected one is an error (the data is not the pinned revision)."""
    detected, how = None, "unknown"
    table = Path(os.path.abspath(table))  # not resolve(): a cache snapshot's file is a symlink into blobs/
    for parent in table.parents:
        if parent.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", parent.name):
            detected, how = parent.name, "hf cache snapshot"
            break
        meta = parent / ".cache" / "huggingface" / "download" / f"{table.relative_to(parent)}.metadata"
        if meta.is_file():
            detected, how = (meta.read_text().splitlines() or [""])[0].strip() or None, f"hf download metadata {meta}"
            break
    if given and detected and given != detected:
        raise DataError(f"{table}: downloaded at revision {detected} ({how}), but revision {given} is pinned; "
                        "download the pinned revision or change the pin")
    if given:
        return given, how if detected else "given (not checked: no download metadata found)"
    return detected, how


# -- one row ----------------------------------------------------------------------------------------------------
def _image_paths(raw, images_root: Path) -> list[tuple[str, Path]]:
    value = raw.get("image")
    if isinstance(value, str):  # some copies store one path as a plain string
        value = [value]
    if value is None or (isinstance(value, list) and not value):
        raise Rejected("no_image", "the row has no image (the paper's problems are all image-grounded)")
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise Rejected("bad_image_field", f"field 'image' must be a list of relative paths, got {value!r:.80}")
    out = []
    root = Path(os.path.abspath(images_root))
    for rel in value:
        path = Path(os.path.normpath(root / rel))  # lexical: a symlinked images/ folder is still inside
        if Path(rel).is_absolute() or not path.is_relative_to(root):
            raise Rejected("image_outside_source", f"{rel!r} is not a path inside {images_root}")
        out.append((rel, path))
    return out


def _check_image(rel: str, path: Path) -> None:
    if not path.is_file():
        raise Rejected("missing_image_file", f"{rel}: no such file under the images root")
    try:
        with Image.open(path) as im:
            im.load()  # decode fully: verify() misses truncated files, which would crash a training step instead
            if im.width < 1 or im.height < 1:
                raise ValueError("empty image")
    except Exception as e:  # PIL raises several types for truncated or non-image files
        raise Rejected("unreadable_image", f"{rel}: {type(e).__name__}: {e}") from None


def convert_row(raw: dict, images_root: Path) -> dict:
    """One source row -> the fields of a split row (images as (source relative path, absolute path)).
    Raises Rejected with the first reason the row cannot be used."""
    qid = raw.get("qid")
    if qid is None or not str(qid).strip():
        raise Rejected("no_qid", "field 'qid' is missing or empty")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise Rejected("no_question", "field 'question' is missing or empty")
    answer = raw.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise Rejected("no_boxed_answer", "field 'answer' is missing or empty")
    gold = unbox(answer)
    images = _image_paths(raw, images_root)
    tags = len(re.findall(IMAGE_TAG, question))
    if tags != len(images):
        raise Rejected("image_tag_count", f"{tags} <image> tag(s) in the question for {len(images)} image(s)")
    text = strip_image_tags(question)
    if not text:
        raise Rejected("no_question", "the question is only <image> tags")
    for rel, path in images:
        _check_image(rel, path)
    pass_rates = {k: raw[k] for k in sorted(raw) if k.startswith("PassRate_")}
    return {"id": str(qid).strip(), "task": str(raw.get("category") or ""), "question": text, "answer": gold,
            "choices": [], "images": images, "qid": str(qid).strip(), "source": str(raw.get("source") or ""),
            "pass_rates": pass_rates}


# -- the whole table --------------------------------------------------------------------------------------------
def _dest(rel: str) -> str:
    """Where a source image goes, relative to the output folder: its source path under images/ (ViRL39K's paths
    already start with images/, which is not doubled)."""
    parts = Path(rel).parts
    return Path("images", *(parts[1:] if parts[0] == "images" and len(parts) > 1 else parts)).as_posix()


def _copy_images(images: list[tuple[str, Path]], out: Path, copied: dict[str, tuple[Path, str]]) -> dict:
    """Copy one row's images (source-relative name, path) into `out`: its images, their sha256 and source names.
    ViRL39K rows may share an image: `copied` (destination -> (source, sha256)) copies and hashes each once."""
    rels, shas, sources = [], [], []
    for rel, path in images:
        sources.append(rel)
        dest = _dest(rel)
        if dest not in copied:
            (out / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / dest)
            copied[dest] = (path, sha256_file(out / dest))
        rels.append(dest)
        shas.append(copied[dest][1])
    return {"images": rels, "images_sha256": shas, "source_images": sources}


def prepare_virl39k(src: str | Path, out: str | Path, table: str | Path | None = None,
                    images_root: str | Path | None = None, revision: str | None = None,
                    max_rejected_fraction: float = 1.0, progress=print) -> dict:
    """Convert the ViRL39K release in `src` into a split under `out` (see the module docstring); returns the
    report (also written to out/prepare_report.json). Raises DataError if no row converts, or if more than
    `max_rejected_fraction` of the rows are rejected (after writing the report)."""
    src, out = Path(src), Path(out)
    table_path = Path(table) if table else find_table(src)
    if not table_path.is_file():
        raise DataError(f"{table_path}: no such table")
    root = Path(images_root) if images_root else (src if src.is_dir() else table_path.parent)
    if out.resolve() in (root.resolve(), table_path.parent.resolve()):
        raise DataError(f"--out {out} is the source folder: write the split elsewhere (the images are copied)")
    rev, rev_from = source_revision(table_path, revision)
    rows = read_table(table_path)
    out.mkdir(parents=True, exist_ok=True)
    converted, rejected, first_row, copied = [], [], {}, {}
    for n, raw in rows:
        qid = raw.get("qid") if isinstance(raw, dict) else None
        try:
            if isinstance(raw, Rejected):
                raise raw
            row = convert_row(raw, root)
            if row["id"] in first_row:
                raise Rejected("duplicate_qid", f"qid {row['id']!r} already used on row {first_row[row['id']]}")
            local: dict[str, Path] = {}
            for rel, path in row["images"]:  # two source files must never land on one output file
                owner = copied[_dest(rel)][0] if _dest(rel) in copied else local.setdefault(_dest(rel), path)
                if owner != path:
                    raise Rejected("image_name_clash", f"{rel} would overwrite the copy of {owner}")
        except Rejected as r:
            rejected.append({"row": n, "qid": None if qid is None else str(qid), "reason": r.reason,
                             "detail": r.detail})
            continue
        first_row[row["id"]] = n
        images = row.pop("images")
        converted.append({**row, **_copy_images(images, out, copied)})
    tmp = out / "train.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in converted))
    tmp.replace(out / "train.jsonl")
    by_reason = dict(sorted(Counter(r["reason"] for r in rejected).items()))
    counts = {"rows": len(rows), "converted": len(converted), "rejected": len(rejected),
              "multi_image": sum(len(r["images"]) > 1 for r in converted), "images": len(copied)}
    source = {"dataset": HUB_ID, "table": table_path.name, "table_path": str(table_path.resolve()),
              "table_sha256": sha256_file(table_path), "revision": rev, "revision_from": rev_from,
              "images_root": str(root.resolve())}
    report = {"source": source, "counts": counts, "rejected_by_reason": by_reason, "rejected": rejected}
    write_atomic(out / "prepare_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    from pgpo.util.provenance import code_version

    write_manifest(out, {"dataset": "virl39k", "source": source, "counts": counts,
                         "rejected_by_reason": by_reason, "report": "prepare_report.json",
                         "prompt": {"image_tags": "stripped", "choices": "left inline in the question"},
                         "code_version": code_version()})
    progress(summary(report, out))
    if not converted:
        raise DataError(f"{table_path}: no row could be converted (see {out / 'prepare_report.json'}); images are "
                        f"resolved under {root} (is images.zip unzipped there?)")
    if rows and len(rejected) / len(rows) > max_rejected_fraction:
        raise DataError(f"{len(rejected)} of {len(rows)} rows rejected, more than the allowed "
                        f"{max_rejected_fraction:.1%}; see {out / 'prepare_report.json'}")
    return report


def summary(report: dict, out: Path) -> str:
    """The counts, the reasons and the first rejected rows, for the terminal (and the workflow's log)."""
    c = report["counts"]
    head = (f"virl39k: {c['rows']} rows -> {c['converted']} converted ({c['multi_image']} with several images, "
            f"{c['images']} image files), {c['rejected']} rejected -> {out / 'train.jsonl'}")
    lines = [head]
    lines += [f"  rejected {reason}: {n}" for reason, n in report["rejected_by_reason"].items()]
    lines += [f"  row {r['row']} qid {r['qid']}: {r['reason']}: {r['detail']}" for r in report["rejected"][:10]]
    if c["rejected"] > 10:
        lines.append(f"  ... every rejected row, by qid: {out / 'prepare_report.json'}")
    rev = report["source"]
    lines.append(f"  source {rev['table']} sha256 {short_digest(rev['table_sha256'])} revision {rev['revision']} "
                 f"({rev['revision_from']})")
    return "\n".join(lines)
