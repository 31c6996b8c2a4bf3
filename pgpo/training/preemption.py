"""SIGTERM: finish the current step, save a resumable checkpoint, exit (issue 23).

Slurm sends SIGTERM before SIGKILL, on preemption (after KillWait, 30 s by default) and, with `--signal=TERM@<s>`,
<s> seconds before the time limit. Without this a preempted run lost everything since its last periodic
checkpoint (up to save_steps - 1 steps: 24 on the paper recipes). With it, the first SIGTERM only sets a flag; at
the end of the step in progress the Trainer saves checkpoint-<step> (weights, optimizer, scheduler, RNG: what
every periodic checkpoint holds) and stops, and `pgpo train` exits with PREEMPTED_EXIT without writing final/ or
finishing run.json, so the same command (a Slurm requeue, Snakemake's retry, a person) resumes from that step
and gives the uninterrupted run's weights. A second SIGTERM terminates at once (the default action), for whoever
cannot wait for the step to end. On a multi-process launch the ranks agree on the flag at every step end (one
all-reduce of one number), so all of them stop after the same step even when the signal reaches them apart.
"""

from __future__ import annotations

import signal

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: "try again later"; the run is resumable, not failed
_state = {"requested": False, "previous": None}


def _on_sigterm(signum, frame):
    _state["requested"] = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM terminates at once


def requested() -> bool:
    """Whether a SIGTERM arrived since the handler was installed."""
    return _state["requested"]


def _agreed(flag: bool) -> bool:
    """The flag OR-ed over the ranks of a distributed launch (the flag itself on one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def preemption_callback():
    """A TrainerCallback: installs the SIGTERM handler for the length of train(), and at each step end turns a
    request into `should_save` + `should_training_stop`."""
    from transformers import TrainerCallback

    class SaveOnSigterm(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            _state["requested"] = False
            _state["previous"] = signal.signal(signal.SIGTERM, _on_sigterm)

        def on_step_end(self, args, state, control, **kwargs):
            if _agreed(_state["requested"]):
                _state["requested"] = True  # every rank, also those the signal has not reached yet
                control.should_save = True
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            if _state["previous"] is not None and signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, _state["previous"])

    return SaveOnSigterm()
