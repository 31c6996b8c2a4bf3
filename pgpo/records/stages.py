"""The files one stage writes and the next reads, as typed records, each read and written here only.

    training   <run>/run_config.json    RunRecord (finished=False): what an unfinished run directory is training
               <run>/run.json           RunRecord (finished=True): the finished run, its hashes and versions
               <run>/metrics.jsonl      one row per optimizer step (read_metrics / append_metrics)
    evaluation <eval>/samples/<benchmark>.meta.json   SamplesMeta: how the samples were made
               <eval>/<benchmark>.json  EvalResult: the scored benchmark

One error policy for all of them: a missing file the caller needs is a FileNotFoundError naming the file and the
command that writes it; an unreadable one is a DataError naming the file (and line); `optional` readers return None
for a missing file instead. A metrics file being appended to (a live run) may end in a torn line: only the last line
may be torn, and only the status reader (`live=True`) skips it.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from pgpo.util.atomic import write_atomic
from pgpo.util.errors import DataError
from pgpo.util.jsonfile import read_json

RUN_FILE = "run.json"
RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"  # rollouts logged beside the curves (pgpo/training/samples.py writes them)
SAMPLES_DIR = "samples"
META_SUFFIX = ".meta.json"


def _load(path: Path, what: str, writer: str) -> dict:
    return read_json(path, writer, what=what)


def _typed(cls, raw: dict, path: Path):
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(raw))
    if missing:
        raise DataError(f"{path}: missing field(s) {missing}")
    return cls(**{k: v for k, v in raw.items() if k in names}, extra={k: v for k, v in raw.items() if k not in names})


def _plain(record) -> dict:
    out = {k: v for k, v in asdict(record).items() if k not in ("extra", "finished", "raw")}
    return {**out, **record.extra}


# ------------------------------------------------------------------------------------------------ training
@dataclass(kw_only=True)
class RunRecord:
    """run.json (finished) or run_config.json (written before the first step: method, config and config_hash only).
    Fields in the order run.json has always had them; fields of an older run.json that this code no longer writes
    are kept in `extra`."""

    method: dict
    """The method record (MethodConfig as a dict)."""
    uses_blind_view: bool | None = None
    """Whether the method ran the blind pass (None: a run.json older than the field)."""
    config: dict
    """The recipe (TrainConfig as a dict)."""
    config_hash: str
    """Hash of recipe x method: the identity of the run."""
    code_version: str = ""
    resumed_from: str | None = None
    resumed_inexactly: bool = False
    """Resumed from a weights-only checkpoint (save_model_only): AdamW's moments, scheduler and RNG restarted,
    so the run differs from an uninterrupted one."""
    wall_seconds: float | None = None
    started_at: int | None = None
    """Epoch ms of this attempt's start."""
    finished_at: int | None = None
    user: str | None = None
    global_steps: int | None = None
    """Optimizer steps trained (run.json only)."""
    inputs: dict = field(default_factory=dict)
    """train_split_sha256, model_hash."""
    final_checkpoint_hash: str = ""
    pixel_budget: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    """torch, trl, transformers."""
    extra: dict = field(default_factory=dict)
    finished: bool = True
    """True for run.json, False for run_config.json (not written into the file)."""


RUN_CONFIG_FIELDS = ("method", "config", "config_hash")  # all run_config.json holds


def write_run(run_dir: str | Path, record: RunRecord) -> Path:
    """run.json if record.finished, else run_config.json."""
    path = Path(run_dir) / (RUN_FILE if record.finished else RUN_CONFIG_FILE)
    plain = _plain(record)
    write_atomic(path, json.dumps(plain if record.finished else {k: plain[k] for k in RUN_CONFIG_FIELDS}, indent=2))
    return path


def read_run(run_dir: str | Path) -> RunRecord:
    """The finished run's run.json."""
    path = Path(run_dir) / RUN_FILE
    return _typed(RunRecord, _load(path, "training run record", "`pgpo train`: run.json is written at its end"), path)


def find_run(run_dir: str | Path) -> RunRecord | None:
    """run.json of a finished run, else run_config.json of one in progress (finished=False), else None."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).is_file():
        return read_run(run_dir)
    path = run_dir / RUN_CONFIG_FILE
    if path.is_file():
        record = _typed(RunRecord, _load(path, "training run config", "`pgpo train`"), path)
        record.finished = False
        return record
    return None


def append_metrics(path: str | Path, row: dict) -> None:
    """One optimizer step's row (it must carry `step`)."""
    if "step" not in row:
        raise ValueError(f"a metrics row needs its step: {sorted(row)}")
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(run_dir: str | Path, live: bool = False, optional: bool = False) -> list[dict]:
    """The rows of <run_dir>/metrics.jsonl in step order, one per step (a step logged again after a resume keeps
    its last row). `live`: the run may be writing, so a torn last line is skipped; anywhere else, and always when
    not live, an unreadable line is a DataError naming it. `optional`: a missing file reads as no rows."""
    path = Path(run_dir) / METRICS_FILE if Path(run_dir).suffix != ".jsonl" else Path(run_dir)
    if not path.is_file():
        if optional or live:
            return []
        raise FileNotFoundError(f"{path}: missing training metrics (`pgpo train` writes one row per step)")
    lines = path.read_text().splitlines()
    rows: dict[int, dict] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if live and i == len(lines):
                break  # being written
            raise DataError(f"{path}:{i}: not a JSON row ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise DataError(f"{path}:{i}: a metrics row needs an integer 'step'")
        rows[row["step"]] = row
    if not live and (path.parent / RUN_FILE).is_file():  # finished: a file cut at a line boundary still parses
        trained = read_run(path.parent).global_steps
        if isinstance(trained, int) and max(rows, default=0) != trained:
            raise DataError(f"{path}: its rows end at step {max(rows, default=0)} but the run trained {trained} steps "
                            f"({path.parent / RUN_FILE}): cut or edited; restore it (the curves cannot be made "
                            "again without training again)")
    return [rows[s] for s in sorted(rows)]


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """On resume from the checkpoint of `step`: keep the rows up to it (a torn last line goes too), so the steps
    after it are not logged twice."""
    path = Path(run_dir) / METRICS_FILE
    if path.exists():
        keep = [row for row in read_metrics(run_dir, live=True) if row["step"] <= step]
        write_atomic(path, "".join(json.dumps(row) + "\n" for row in keep))


def read_samples(run_dir: str | Path, live: bool = False) -> list[dict]:
    """The lines of <run_dir>/samples.jsonl ([] if there is none). `live`: the run may be writing (or was killed
    writing), so a torn last line is skipped; anywhere else an unreadable line is a DataError naming it."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    lines, rows = path.read_text().splitlines(), []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            problem = None if isinstance(row, dict) and isinstance(row.get("step"), int) else "no integer step"
        except json.JSONDecodeError as e:
            problem = e.msg
        if problem:
            if live and i == len(lines):
                break
            raise DataError(f"{path}:{i}: not a rollout sample ({problem}); cut the file before line {i} "
                            f"(`head -n {i - 1}`) or delete it: the samples are a view of the run, not its record")
        rows.append(row)
    return rows


def truncate_samples(run_dir: str | Path, step: int | None) -> None:
    """On resume from the checkpoint of `step`, keep the samples up to it; on a fresh start (None), none."""
    path = Path(run_dir) / SAMPLES_FILE
    if step is None:
        path.unlink(missing_ok=True)
    elif path.exists():
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in read_samples(run_dir, live=True) if r["step"] <= step))


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class SamplesMeta:
    """samples/<benchmark>.meta.json: how one benchmark's samples were made (pgpo.evaluation.generate)."""

    benchmark: str
    checkpoint: str
    checkpoint_hash: str
    sampling: dict
    """SamplingConfig as a dict (`samples` = k)."""
    samples_sha256: str
    task: str = ""
    backend: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    """The data's provenance: a hub dataset's commit or a local split's sha256."""
    grading: dict = field(default_factory=dict)
    """The benchmark's own grading rule (task YAML), if any."""
    lmms_eval: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    """The file as read, in its order."""

    @property
    def k(self) -> int:
        return int(self.sampling["samples"])

    def as_dict(self) -> dict:
        """The file's fields as written, in their order (the scored result keeps them as its `generation`)."""
        return dict(self.raw)


def samples_path(eval_dir: str | Path, benchmark: str) -> Path:
    return Path(eval_dir) / SAMPLES_DIR / f"{benchmark}.jsonl"


def write_samples_meta(samples: str | Path, meta: dict) -> Path:
    path = Path(samples).with_suffix(META_SUFFIX)
    write_atomic(path, json.dumps(meta, indent=2, default=str))
    return path


def read_samples_meta(samples: str | Path) -> SamplesMeta:
    """The meta file beside a samples file (samples/<benchmark>.jsonl)."""
    path = Path(samples).with_suffix(META_SUFFIX)
    raw = _load(path, "samples meta file", "`pgpo evaluate`: samples are written with it")
    meta = _typed(SamplesMeta, {k: v for k, v in raw.items() if k != "raw"}, path)
    meta.raw = raw
    return meta


@dataclass
class EvalResult:
    """<eval>/<benchmark>.json: one scored benchmark (pgpo.evaluation.score)."""

    k: int
    per_question: list
    """{id, mean, samples}: the per-question (and per-sample) scores the paired tables need."""
    avg_at_k: float | None = None
    checkpoint_hash: str = ""
    samples_sha256: str = ""
    benchmark: str = ""
    n_questions: int | None = None
    ci95_bootstrap: list = field(default_factory=list)
    invalid_gold: list = field(default_factory=list)
    """Questions whose gold answer names no choice: listed, not scored."""
    standard_error: float | None = None
    agrees_with_lmms_eval: bool | None = None
    """lmms-eval's own in-run avg@k equals ours (None where not comparable)."""
    n_failed: int = 0
    n_timeout: int = 0
    generation: dict = field(default_factory=dict)
    """The samples' meta record."""
    extra: dict = field(default_factory=dict)


def result_path(eval_dir: str | Path, benchmark: str, grader: str = "pgpo") -> Path:
    return Path(eval_dir) / (f"{benchmark}.json" if grader == "pgpo" else f"{benchmark}.{grader}.json")


def write_eval_result(eval_dir: str | Path, result: dict, grader: str = "pgpo") -> Path:
    path = result_path(eval_dir, result["benchmark"], grader)
    write_atomic(path, json.dumps(result, indent=2))
    return path


def read_eval_result(eval_dir: str | Path, benchmark: str, optional: bool = False) -> EvalResult | None:
    path = result_path(eval_dir, benchmark)
    if optional and not path.is_file():
        return None
    return _typed(EvalResult, _load(path, "evaluation result", f"`pgpo score --run {Path(eval_dir)}` (from its "
                                                               "samples)"), path)


def summary_path(eval_dir: str | Path, shard: str | None = None, grader: str = "pgpo") -> Path:
    """A scoring's summary: shard-<shard>.json of a workflow's evaluation job, else summary[.<grader>].json."""
    if shard:
        return Path(eval_dir) / f"shard-{shard}.json"
    return Path(eval_dir) / ("summary.json" if grader == "pgpo" else f"summary.{grader}.json")


def write_eval_summary(path: str | Path, benchmarks: dict[str, dict], mean_over: list[str] | None = None) -> dict:
    """{"benchmarks": {name: {avg_at_k, k, ...}}, "mean_avg_at_k", "mean_over"} (what `pgpo score` prints): the mean
    over `mean_over` (pgpo.evaluation.benchmarks.headline of the scored ones; default all of them), None if empty."""
    mean_over = list(benchmarks) if mean_over is None else list(mean_over)
    values = [benchmarks[b]["avg_at_k"] for b in mean_over]
    table = {"benchmarks": benchmarks, "mean_avg_at_k": sum(values) / len(values) if values else None,
             "mean_over": mean_over}
    write_atomic(Path(path), json.dumps(table, indent=2))
    return table


def read_eval_summary(path: str | Path) -> dict[str, float]:
    """benchmark -> avg@k of a scoring's summary."""
    raw = _load(Path(path), "evaluation summary", "`pgpo score`")
    try:
        return {b: float(r["avg_at_k"]) for b, r in raw["benchmarks"].items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not an evaluation summary (benchmarks -> avg_at_k): {e!r}") from None
