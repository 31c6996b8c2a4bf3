"""The benchmarks: one lmms-eval task YAML each in pgpo/lmms_tasks (the single place for dataset id, split,
revision and subset filter), discovered here by name, plus the offline inputs of the tiny suites."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pgpo.config.schema import ConfigError

TASKS_DIR = Path(__file__).resolve().parent.parent / "lmms_tasks"
PREFIX = "pgpo_"


@dataclass(frozen=True)
class Benchmark:
    """A pgpo_ task: its lmms-eval name, its YAML and the metadata block of that YAML."""

    name: str  # short name, e.g. geo3k, tiny_count
    task: str  # lmms-eval task name, e.g. pgpo_geo3k
    yaml_path: Path
    meta: dict

    @property
    def profile(self) -> str:
        return self.meta.get("profile", "paper")

    @property
    def in_average(self) -> bool:
        """Counts in the headline mean (metadata `in_average`, default true; a text-only control does not)."""
        return bool(self.meta.get("in_average", True))

    @property
    def offline(self) -> bool:
        """True for suites read from the project's own data directory (no hub)."""
        return self.profile == "tiny"


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads lmms-eval YAMLs without importing their `!function` hooks."""


_TagTolerantLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def read_task_yaml(path: Path) -> dict:
    """A task YAML with its `include:` merged (hooks left as '!function name' strings)."""
    raw = yaml.load(path.read_text(), Loader=_TagTolerantLoader) or {}
    include = raw.pop("include", None)
    if include:
        return {**read_task_yaml(path.parent / include), **raw}
    return raw


def all_benchmarks() -> dict[str, Benchmark]:
    out = {}
    for path in sorted(TASKS_DIR.glob(f"{PREFIX}*.yaml")):
        raw = read_task_yaml(path)
        meta = raw.get("metadata") or {}
        name = meta.get("benchmark") or raw["task"][len(PREFIX):]
        out[name] = Benchmark(name, raw["task"], path, meta)
    return out


def headline(names: list[str]) -> list[str]:
    """The benchmarks "the mean" averages over, everywhere it is shown (an evaluation's summary and log, MLflow's
    avg_at_k.mean, `pgpo status`; the tables' Avg column through each profile's `average_over`, which a test holds
    equal to this): `names` without the controls (in_average: false). A benchmark not in the registry counts."""
    known = all_benchmarks()
    return [n for n in names if n not in known or known[n].in_average]


def headline_mean(scores: dict[str, float | None]) -> float | None:
    """The mean of `scores` (benchmark -> avg@k) over headline(...); None if none of them is scored."""
    values = [scores[n] for n in headline(list(scores)) if scores[n] is not None]
    return sum(values) / len(values) if values else None


def groups() -> dict[str, list[str]]:
    """Named sets: `paper` (Table 1's eight columns, in the paper's order) and `tiny` (the synthetic suites)."""
    bench = sorted(all_benchmarks().values(), key=lambda b: b.meta.get("column", 99))
    return {p: [b.name for b in bench if b.profile == p] for p in ("paper", "tiny")}


def resolve(names: list[str]) -> list[Benchmark]:
    """Benchmarks for names (short, pgpo_-prefixed, or a group), in order, without duplicates."""
    bench, grp = all_benchmarks(), groups()
    out: list[Benchmark] = []
    for raw in names:
        name = raw.strip()
        name = name.removeprefix(PREFIX)
        if name in grp:
            picked = [bench[n] for n in grp[name]]
        elif name in bench:
            picked = [bench[name]]
        else:
            raise ConfigError(f"unknown benchmark {raw!r}; known: {sorted(bench)}; groups: {sorted(grp)}")
        out += [b for b in picked if b not in out]
    if not out:
        raise ConfigError("no benchmarks given")
    return out


def tiny_source(name: str, data_dir: str | Path) -> Path:
    """The split a tiny suite (tiny_<skill>) is read from: <data_dir>/suite_<skill>.jsonl."""
    return Path(data_dir) / f"suite_{name.removeprefix('tiny_')}.jsonl"


def tiny_inputs(bench: Benchmark, data_dir: str | Path, out_dir: Path) -> tuple[Path, str]:
    """Validate a tiny suite against its MANIFEST and write it in the canonical doc schema with absolute image
    paths (lmms-eval's json loader knows no data root). Returns (file written, sha256 of the source split)."""
    from pgpo.data.datasets import DataError, load_split, sha256_file, verify_manifest

    data_dir = Path(data_dir)
    source = tiny_source(bench.name, data_dir)
    if not source.exists():
        raise DataError(f"{source}: missing; create the tiny suites with `pgpo make-data --out {data_dir}`")
    verify_manifest(data_dir)
    records = load_split(source)
    out = out_dir / "inputs" / f"{bench.name}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r.id, "question": r.question, "answer": r.answer, "choices": r.choices, "show_choices": True,
             "images": list(r.images)} for r in records]
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # ranks of a parallel launch write the same file: atomically
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, out)
    return out, sha256_file(source)


def task_override(bench: Benchmark, samples: int, gen_kwargs: dict, data_file: Path | None = None,
                  revision: str | None = None) -> dict:
    """The lmms-eval task dict for one run: the YAML's task with this run's k, generation settings and either the
    tiny suite's input file or the exact (cached) dataset commit."""
    override = {"task": bench.task, "repeats": samples, "generation_kwargs": gen_kwargs,
                "filter_list": [{"name": "k_samples", "filter": [{"function": "take_first_k", "k": samples}]}]}
    if data_file is not None:
        override["dataset_kwargs"] = {"data_files": {"test": str(data_file)}}
    if revision is not None:
        override["dataset_kwargs"] = {"revision": revision}
    return override


def hub_source(bench: Benchmark) -> dict:
    """Dataset id, config, split and revision of a hub benchmark, as its task YAML states them."""
    raw = read_task_yaml(bench.yaml_path)
    return {"dataset": raw.get("dataset_path"), "config": raw.get("dataset_name"), "split": raw.get("test_split"),
            "revision": (raw.get("dataset_kwargs") or {}).get("revision")}


def fetch_command(bench: Benchmark) -> str:
    src = hub_source(bench)
    rev = f" --revision {src['revision']}" if src["revision"] else ""
    return f"hf download --repo-type dataset {src['dataset']}{rev}   (or: pgpo fetch --benchmarks {bench.name})"


def check_cached(bench: Benchmark) -> str:
    """The cached commit of a hub benchmark's dataset; DataError naming the fetch command if it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from pgpo.data.datasets import DataError

    src = hub_source(bench)
    try:
        path = snapshot_download(src["dataset"], repo_type="dataset", revision=src["revision"], local_files_only=True)
    except (LocalEntryNotFoundError, OSError) as e:  # not in the cache
        raise DataError(f"{bench.name}: dataset {src['dataset']} (revision {src['revision'] or 'unpinned'}) is not "
                        f"in the Hugging Face cache ({type(e).__name__}). Fetch it on a machine with network and "
                        f"share HF_HOME: {fetch_command(bench)}") from None
    return Path(path).name  # snapshots/<commit>


def fetch(bench: Benchmark, pin: bool = False) -> str:
    """Download a hub benchmark's dataset (network) at its revision; with pin, write the commit into its YAML."""
    from huggingface_hub import snapshot_download

    src = hub_source(bench)
    commit = Path(snapshot_download(src["dataset"], repo_type="dataset", revision=src["revision"])).name
    if pin and src["revision"] != commit:
        text = bench.yaml_path.read_text()
        pinned = re.sub(r"(?m)^(  revision:).*$", rf"\1 {commit}", text, count=1)
        if pinned == text:
            raise ConfigError(f"{bench.yaml_path}: no 'revision:' line under dataset_kwargs to pin")
        bench.yaml_path.write_text(pinned)
    return commit
