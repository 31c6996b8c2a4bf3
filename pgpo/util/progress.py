"""Progress that reads well in a log file: plain lines instead of tqdm bars when the output is not a terminal.

Snakemake jobs write `> log 2>&1`; tqdm redraws its bar with carriage returns, which `less` and `grep` show as
hundreds of repeated bars. Where stderr is not a TTY (or PGPO_PROGRESS=plain), training, the warm start and
pgpo_vlm sampling print one line every `every_seconds` (and every `every_steps` steps), plus the first and last:
    step 3/30 reward 0.410 2.1 s/step eta 57 s
PGPO_PROGRESS=bars keeps tqdm's bars anywhere.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "PGPO_PROGRESS"  # plain | bars (default: plain when stderr is not a terminal)
EVERY_SECONDS = 30.0  # a plain line at least this often while work advances
EVERY_STEPS = 10  # and every this many training steps


def plain_wanted(stream=None) -> bool:
    """True when progress should be plain lines: PGPO_PROGRESS=plain, or stderr is not a terminal."""
    choice = os.environ.get(ENV, "").lower()
    if choice in ("plain", "bars"):
        return choice == "plain"
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def quiet_environment() -> None:
    """Where the log is a file, before the libraries load (`pgpo` calls it first): library progress bars are off
    (transformers' and huggingface_hub's "Loading weights" / "Writing model shards", datasets', lmms-eval's request
    building: tqdm's own TQDM_DISABLE default), and a bar that sets `disable` itself (lmms-eval's postprocessing)
    draws only its first and last state. The variables are read when those modules are imported."""
    if plain_wanted():
        for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                            ("TQDM_DISABLE", "1"), ("TQDM_MININTERVAL", "600")):
            os.environ.setdefault(name, value)


def quiet_library_bars() -> None:
    """quiet_environment for libraries already imported (training started from Python, not `pgpo`)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    logging.disable_progress_bar()
    disable_progress_bars()


def eta_text(seconds: float) -> str:
    """57 s, 14 min, 2.3 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress_line(label: str, done: int, total: int, seconds_per: float | None, unit: str = "step",
                  extra: str = "") -> str:
    """`step 3/30 reward 0.410 2.1 s/step eta 57 s` (no rate or eta before the first unit is timed)."""
    parts = [f"{label} {done}/{total}" if total else f"{label} {done}"]
    if extra:
        parts.append(extra)
    if seconds_per is not None:
        parts.append(f"{seconds_per:.3g} s/{unit}")
        if total:
            parts.append(f"eta {eta_text(seconds_per * max(0, total - done))}")
    return " ".join(parts)


class PlainBar:
    """tqdm's update()/close() for a log file: a line at the first update, every `every_seconds`, and at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", every_seconds: float = EVERY_SECONDS,
                 stream=None, disable: bool = False):
        self.total, self.desc, self.unit, self.every = total or 0, desc, unit, every_seconds
        self.stream, self.disable = stream or sys.stderr, disable
        self.n, self.start, self.last_print, self.printed_n = 0, time.perf_counter(), None, -1

    def _print(self) -> None:
        per = (time.perf_counter() - self.start) / self.n if self.n else None
        print(progress_line(self.desc, self.n, self.total, per, self.unit), file=self.stream, flush=True)
        self.last_print, self.printed_n = time.perf_counter(), self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        if self.last_print is None or time.perf_counter() - self.last_print >= self.every or self.n == self.total:
            self._print()

    def close(self) -> None:
        if not self.disable and self.printed_n != self.n:
            self._print()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, unit: str = "it", disable: bool = False):
    """A tqdm bar on a terminal, a PlainBar (plain lines) in a log file."""
    if plain_wanted():
        return PlainBar(total, desc, unit, disable=disable)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=disable)


def iterate(items, desc: str, unit: str = "it"):
    """Yield from `items` with a progress bar (see progress_bar)."""
    bar = progress_bar(len(items), desc, unit)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def plain_progress_callback(every_steps: int = EVERY_STEPS, every_seconds: float = EVERY_SECONDS, stream=None):
    """A TrainerCallback printing `step N/M reward R S s/step eta E` lines (rank 0): the first step, every
    `every_steps` steps or `every_seconds`, whichever comes first, and the last step. s/step counts only the steps
    of this process (a resumed run does not claim the earlier steps' speed)."""
    from transformers import TrainerCallback

    class PlainProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step, self.last_print = time.perf_counter(), state.global_step, None
            if state.is_world_process_zero:
                resumed = f" (resuming at step {state.global_step})" if state.global_step else ""
                print(f"training: {state.max_steps} steps{resumed}", file=stream or sys.stderr, flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not (state.is_world_process_zero and logs and "loss" in logs):
                return
            step, now = state.global_step, time.perf_counter()
            due = (self.last_print is None or step >= state.max_steps or now - self.last_print >= every_seconds
                   or (every_steps and step % every_steps == 0))
            if not due:
                return
            done_here = step - self.first_step
            per = (now - self.start) / done_here if done_here > 0 else None
            reward = f"reward {logs['reward']:.3f}" if isinstance(logs.get("reward"), (int, float)) else ""
            print(progress_line("step", step, state.max_steps, per, "step", reward), file=stream or sys.stderr,
                  flush=True)
            self.last_print = now

    return PlainProgress()


def use_plain_progress(trainer) -> bool:
    """Swap the Trainer's tqdm ProgressCallback for plain lines where the output is not a terminal."""
    if not plain_wanted():
        return False
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(plain_progress_callback())
    quiet_library_bars()
    return True
