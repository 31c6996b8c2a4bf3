"""The testbed's suites: images and questions of the existing synthetic skills (digit, count), warm-start targets
`<think> w1 ... wL</think>\\boxed{answer}` with the filler of each variant.

Layout under `out`: train.jsonl (the RL prompts, skills interleaved), suite_<skill>.jsonl (held-out questions),
warmstart_<variant>.jsonl (the same warm-start problems for every variant, each with its variant's filler in
`rationale`), images/<split>/ (each image written once, shared by the variants), filler_words.json and
MANIFEST.json. Everything is a deterministic function of (seed, split, index): the images and answers of
pgpo.tiny.synthetic.make_item, the filler of a random variant from (seed, split, skill, index, variant name)."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pgpo.data.datasets import sha256_file, write_manifest
from pgpo.testbed.filler import filler_text, filler_words, random_filler
from pgpo.tiny.synthetic import SPLIT_IDS, TASKS, make_item
from pgpo.util.atomic import write_atomic
from pgpo.util.jsonfile import field, read_json

KINDS = ("random", "fixed")


@dataclass(frozen=True)
class Variant:
    """One testbed variant: how the filler of its warm-start targets is drawn."""

    filler: str
    """random: L words drawn uniformly per target; fixed: one sequence of L words shared by every target."""
    length: int
    """L, filler words (= tokens) per response."""

    def __post_init__(self):
        if self.filler not in KINDS:
            raise ValueError(f"filler must be one of {KINDS}, got {self.filler!r}")
        if not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"length must be a positive integer, got {self.length!r}")


def data_config(data_dir: str | Path) -> dict:
    """The `config` of a testbed data folder's MANIFEST.json (skills, variants, seed), read naming the file."""
    manifest = Path(data_dir) / "MANIFEST.json"
    return field(read_json(manifest, "`pgpo testbed data`", what="testbed data manifest"), manifest, "config")


def data_skills(data_dir: str | Path) -> list[str]:
    return field(data_config(data_dir), Path(data_dir) / "MANIFEST.json", "skills")


def parse_variants(raw: dict) -> dict[str, Variant]:
    """{name: {filler, length}} from the workflow config, every problem named."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError("testbed.variants: a non-empty mapping name -> {filler, length} is required")
    out = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or set(spec) != {"filler", "length"}:
            raise ValueError(f"testbed.variants.{name}: expected keys filler and length, got {spec!r}")
        try:
            out[name] = Variant(**spec)
        except ValueError as e:
            raise ValueError(f"testbed.variants.{name}: {e}") from None
    return out


def _rng(seed: int, *keys) -> np.random.Generator:
    salted = [zlib.crc32(str(k).encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng([seed, 21, *salted])


def variant_filler(words: list[str], variant: Variant, name: str, seed: int, split: str, skill: str,
                   index: int) -> list[str]:
    """The filler of one warm-start target. A fixed variant's is the same for every (split, skill, index)."""
    if variant.filler == "fixed":
        return random_filler(words, variant.length, _rng(seed, "fixed", name))
    return random_filler(words, variant.length, _rng(seed, SPLIT_IDS[split], skill, index, name))


def _write_images(items, root: Path, split: str) -> list[tuple[str, str]]:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(items):
        rel = f"images/{split}/{i:06d}.png"
        item.image.save(root / rel, format="PNG")
        paths.append((rel, sha256_file(root / rel)))
    return paths


def _write_rows(root: Path, name: str, items, images, rationales) -> None:
    with open(root / f"{name}.jsonl", "w") as f:
        for i, (item, (rel, sha), why) in enumerate(zip(items, images, rationales)):
            f.write(json.dumps({"id": f"{name}-{i:06d}", "task": item.task, "question": item.question,
                                "answer": item.answer, "choices": item.choices or [], "image": rel,
                                "image_sha256": sha, "rationale": why}) + "\n")


def _items(skills: list[str], seed: int, split: str, per_skill: int):
    """Interleaved by skill, so any prefix of a split is balanced; (item, index within its skill)."""
    return [(make_item(s, seed, split, i), i) for i in range(per_skill) for s in skills]


def make_testbed_data(out: str | Path, model_dir: str | Path, variants: dict[str, Variant], skills: list[str],
                      seed: int = 0, train_per_skill: int = 500, warmstart_per_skill: int = 3000,
                      eval_per_skill: int = 100) -> Path:
    """Write the testbed's splits under `out` (see the module docstring); the filler words come from the
    tokenizer of `model_dir` (the built tiny model)."""
    from transformers import AutoTokenizer

    unknown = [s for s in skills if s not in TASKS]
    if unknown or not skills:
        raise ValueError(f"testbed.skills: {unknown or skills} not synthetic tasks; known: {sorted(TASKS)}")
    words = filler_words(AutoTokenizer.from_pretrained(model_dir))
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for name, split, per in [("train", "train", train_per_skill)] + [
            (f"suite_{s}", "eval", eval_per_skill) for s in skills]:
        chosen = [(it, i) for it, i in _items(skills if name == "train" else [name[6:]], seed, split, per)]
        items = [it for it, _ in chosen]
        _write_rows(root, name, items, _write_images(items, root, name), [""] * len(items))
    chosen = _items(skills, seed, "warmstart", warmstart_per_skill)
    items = [it for it, _ in chosen]
    images = _write_images(items, root, "warmstart")
    for vname, variant in variants.items():
        rationales = [filler_text(variant_filler(words, variant, vname, seed, "warmstart", it.task, i))
                      for it, i in chosen]
        _write_rows(root, f"warmstart_{vname}", items, images, rationales)
    write_atomic(root / "filler_words.json", json.dumps(words, indent=1))
    write_manifest(root, {"seed": seed, "skills": skills, "train_per_skill": train_per_skill,
                          "warmstart_per_skill": warmstart_per_skill, "eval_per_skill": eval_per_skill,
                          "variants": {k: asdict(v) for k, v in variants.items()}, "filler_words": len(words)})
    return root
