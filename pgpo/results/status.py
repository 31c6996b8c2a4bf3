"""`pgpo status ROOT`: where every training and evaluation of a workflow stands, read from the files on disk.

Snakemake says "N of M steps"; this says, per job, what it has done. Nothing here talks to a running process:
- a training run is a directory under ROOT/runs or ROOT/ablation with run_config.json (written before the first
  step), metrics.jsonl (one row per optimizer step: step, reward, step_time) or run.json (written at the end);
  checkpoint-N/trainer_state.json dates the saves. Its log is ROOT/logs/train/<size>/<run>.log or
  ROOT/logs/ablation/<...>.log (the workflow's rules).
- an evaluation job writes ROOT/logs/eval/<size>/<run>/<shard>.log (lines `[n/N] <benchmark>: ...` and
  `pgpo_vlm sampling i/M ... eta ...`), then samples/<benchmark>.jsonl and finally shard-<shard>.json (the
  summary) into ROOT/eval/<size>/<run>/. A `pgpo evaluate` run by hand (no log) shows its samples and scores.
States: finished, running, starting (no step yet), failed (its log ends in an error), stale (nothing written for
`stale_after` seconds: killed, preempted or hung).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgpo.records.layout import Layout
from pgpo.records.stages import (METRICS_FILE, RUN_CONFIG_FILE, RUN_FILE, SAMPLES_DIR, find_run, read_eval_result,
                                 read_eval_summary, read_metrics, summary_path)
from pgpo.util.errors import UserError
from pgpo.util.progress import eta_text

TRACEBACK = "Traceback (most recent call last)"
FATAL = re.compile(r"^(pgpo [\w-]+: error: |[\w.]*(Error|Exception|Interrupt)\b: ?|Killed\b)")  # a log's last words
BENCH_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+):")
SAMPLING_LINE = re.compile(r"pgpo_vlm sampling (\d+)/(\d+)(?: (\S+) s/request)?")


@dataclass
class TrainingStatus:
    """One training run, as its files say."""

    name: str  # the run directory relative to ROOT
    state: str  # finished | running | starting | failed | stale | broken (a file it reads is unreadable)
    step: int = 0  # last optimizer step logged (finished: global steps)
    max_steps: int | None = None  # the recipe's max_steps (None: epoch-based)
    reward: float | None = None  # mean reward of the last logged step
    seconds_per_step: float | None = None  # between the two newest checkpoints, else TRL's mean step_time
    eta_seconds: float | None = None  # remaining steps x seconds_per_step (running runs)
    idle_seconds: float = 0.0  # since the last file of the run changed
    note: str = ""  # the error line of a failed run, wall time of a finished one


@dataclass
class EvaluationStatus:
    """One evaluation job (a shard of a run's benchmarks) or a hand-run evaluation directory."""

    name: str  # eval/<size>/<run>[:<shard>]
    state: str  # finished | running | starting | failed | stale | broken (a file it reads is unreadable)
    benchmarks_done: list[str] = field(default_factory=list)  # samples written
    scores: dict = field(default_factory=dict)  # {benchmark: avg@k} of the scored ones
    current: str = ""  # the benchmark being sampled, "n/N name"
    requests: tuple[int, int] | None = None  # (done, total) sampling requests of the current benchmark
    eta_seconds: float | None = None  # of the current benchmark's sampling
    idle_seconds: float = 0.0
    note: str = ""


def _mtime(*paths: Path) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def _tail(path: Path, lines: int = 200) -> list[str]:
    """The last lines of a log; carriage-return redraws (tqdm) split into lines too."""
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        text = f.read().decode(errors="replace")
    return [t.strip() for t in re.split(r"[\r\n]+", text) if t.strip()][-lines:]


def log_error(lines: list[str]) -> str | None:
    """The error a log ends with: `pgpo <command>: error: ...`, an exception line (a traceback's last line) or
    `Killed`; None while it ends otherwise (warnings mentioning errors mid-run do not count)."""
    tail = lines[-15:]
    fatal = [t for t in tail if FATAL.match(t)]
    if fatal and (FATAL.match(tail[-1]) or any(TRACEBACK in t for t in tail)):
        return fatal[-1]
    return None


def _checkpoint_rate(run_dir: Path) -> float | None:
    """Seconds per step between the two newest complete checkpoints (saves and rollouts included)."""
    saved = sorted((int(p.parent.name.split("-")[-1]), p.stat().st_mtime)
                    for p in run_dir.glob("checkpoint-*/trainer_state.json") if p.parent.name[11:].isdigit())
    if len(saved) < 2 or saved[-1][0] == saved[-2][0]:
        return None
    (s1, t1), (s2, t2) = saved[-2], saved[-1]
    return (t2 - t1) / (s2 - s1)


def training_status(run_dir: str | Path, name: str, log: Path | None = None, now: float | None = None,
                    stale_after: float = 1800.0) -> TrainingStatus:
    """The status of one training run directory."""
    run_dir, now = Path(run_dir), now or time.time()
    record = find_run(run_dir)
    max_steps = (record.config.get("max_steps") if record else None) or None
    rows = read_metrics(run_dir, live=True)
    last = rows[-1] if rows else {}
    reward = last.get("reward")
    if record is not None and record.finished:
        return TrainingStatus(name, "finished", record.global_steps, max_steps, reward,
                              idle_seconds=now - _mtime(run_dir / RUN_FILE),
                              note=f"{record.wall_seconds} s of training")
    updated = _mtime(run_dir / RUN_CONFIG_FILE, run_dir / METRICS_FILE, *run_dir.glob("checkpoint-*"),
                     *([log] if log else []))
    step = int(last.get("step", 0))
    times = [r["step_time"] for r in rows[-10:] if isinstance(r.get("step_time"), (int, float))]
    per = _checkpoint_rate(run_dir) or (sum(times) / len(times) if times else None)
    eta = per * max(0, max_steps - step) if per is not None and max_steps else None
    st = TrainingStatus(name, "running" if rows else "starting", step, max_steps, reward, per, eta, now - updated)
    error = log_error(_tail(log)) if log else None
    if error:
        st.state, st.eta_seconds, st.note = "failed", None, error
    elif now - updated > stale_after:
        st.state, st.eta_seconds, st.note = "stale", None, f"nothing written for {eta_text(now - updated)}"
    return st


def _scores(eval_dir: Path) -> dict:
    out = {}
    for samples in sorted((eval_dir / SAMPLES_DIR).glob("*.jsonl")):
        result = read_eval_result(eval_dir, samples.stem, optional=True)
        if result is not None:
            out[samples.stem] = result.avg_at_k
    return out


def evaluation_status(eval_dir: str | Path, name: str, shard: str | None = None, log: Path | None = None,
                      now: float | None = None, stale_after: float = 1800.0) -> EvaluationStatus:
    """The status of one evaluation job (`shard` with its `log`) or of a hand-run evaluation directory."""
    eval_dir, now = Path(eval_dir), now or time.time()
    done = sorted(p.stem for p in (eval_dir / SAMPLES_DIR).glob("*.jsonl"))
    scores = _scores(eval_dir)
    summary = summary_path(eval_dir, shard)
    if summary.is_file():
        ours = read_eval_summary(summary)
        return EvaluationStatus(name, "finished", sorted(ours), ours, idle_seconds=now - _mtime(summary))
    lines = _tail(log, 400) if log else []
    updated = _mtime(*(eval_dir / SAMPLES_DIR).glob("*"), *([log] if log else []))
    st = EvaluationStatus(name, "running" if lines or done else "starting", done, scores, idle_seconds=now - updated)
    for line in reversed(lines):
        m = BENCH_LINE.search(line)
        if m:
            st.current = f"{m.group(1)}/{m.group(2)} {m.group(3)}"
            break
        s = SAMPLING_LINE.search(line)
        if s and st.requests is None:  # the newest sampling line after the newest benchmark line
            st.requests = (int(s.group(1)), int(s.group(2)))
            if s.group(3):
                st.eta_seconds = float(s.group(3)) * (st.requests[1] - st.requests[0])
    error = log_error(lines)
    if error:
        st.state, st.eta_seconds, st.note = "failed", None, error
    elif log is None and done and not summary.is_file():
        st.state = "finished" if set(done) <= set(scores) else "running"  # by hand: scored means done
        if st.state == "running" and now - updated > stale_after:
            st.state, st.note = "stale", "samples not scored (pgpo score --run ...)"
    elif now - updated > stale_after:
        st.state, st.eta_seconds, st.note = "stale", None, f"nothing written for {eta_text(now - updated)}"
    return st


def status(root: str | Path, now: float | None = None, stale_after: float = 1800.0) -> dict:
    """{"trainings": [TrainingStatus], "evaluations": [EvaluationStatus]} of a workflow root."""
    from pgpo.config.schema import ConfigError

    root, now = Path(root), now or time.time()
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory (the workflow's results root, e.g. results/tiny)")
    layout = Layout(root)
    trainings = [_broken_as_state(TrainingStatus, training_status, d, str(d.relative_to(root)), layout.log_of_run(d),
                                  now, stale_after) for d in layout.training_runs()]
    evaluations = [_broken_as_state(EvaluationStatus, evaluation_status, d,
                                    str(d.relative_to(root)) + (f" [{shard}]" if shard else ""), shard, log, now,
                                    stale_after) for d, shard, log in layout.evaluations()]
    return {"trainings": trainings, "evaluations": evaluations}


def _broken_as_state(cls, fn, directory: Path, name: str, *args):
    """fn's status, or state `broken` with the one-line error naming the unreadable file: one cut file once
    stopped `pgpo status` with a raw JSONDecodeError and listed nothing."""
    try:
        return fn(directory, name, *args)
    except (UserError, OSError) as e:
        return cls(name, "broken", note=str(e).splitlines()[0])


def _clock(now: float, eta: float | None) -> str:
    return f"eta {eta_text(eta)} ({time.strftime('%H:%M', time.localtime(now + eta))})" if eta is not None else ""


def format_status(st: dict, now: float | None = None) -> str:
    """Plain text: one line per training run, one per evaluation job, and the counts by state."""
    now = now or time.time()
    out = [f"trainings ({len(st['trainings'])})"]
    for t in st["trainings"]:
        steps = f"step {t.step}/{t.max_steps}" if t.max_steps else f"step {t.step}"
        parts = [f"  {t.state:9s}", t.name, steps]
        if t.reward is not None:
            parts.append(f"reward {t.reward:.3f}")
        if t.seconds_per_step is not None and t.state == "running":
            parts.append(f"{t.seconds_per_step:.3g} s/step")
        parts += [_clock(now, t.eta_seconds) if t.state == "running" else "", t.note]
        out.append(" ".join(p for p in parts if p))
    out.append(f"evaluations ({len(st['evaluations'])})")
    for e in st["evaluations"]:
        parts = [f"  {e.state:9s}", e.name]
        if e.state == "finished":
            from pgpo.evaluation.benchmarks import headline_mean

            mean = headline_mean(e.scores)  # per benchmark: the shard / result JSONs; the one headline mean
            parts.append(f"{len(e.scores)} benchmark(s), mean avg@k {mean:.3f}" if mean is not None else "")
        else:
            parts.append(f"{len(e.benchmarks_done)} benchmark(s) sampled")
            if e.current:
                parts.append(f"now {e.current}")
            if e.requests:
                parts.append(f"{e.requests[0]}/{e.requests[1]} requests")
            parts.append(_clock(now, e.eta_seconds))
        parts.append(e.note)
        out.append(" ".join(p for p in parts if p))
    counts: dict[str, int] = {}
    for item in st["trainings"] + st["evaluations"]:
        counts[item.state] = counts.get(item.state, 0) + 1
    out.append("total: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing found"))
    return "\n".join(out)
