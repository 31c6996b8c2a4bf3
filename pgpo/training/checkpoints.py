"""Which checkpoint a resume may load: complete means every file of it is whole, not only trainer_state.json
(issue 23).

The Trainer writes trainer_state.json last, so its absence marks a save cut short; but a checkpoint whose
model.safetensors was truncated later (a copy, a disk error, a full disk during a re-save) still had one, and
resuming from it stopped with safetensors' raw `SafetensorError` and no path, while the intact previous checkpoint
was never tried. Each file is checked by its own format's framing (pgpo.util.integrity), which a cut file cannot
satisfy, without loading a tensor. Sharded weights are checked shard by shard (their index parses too).
"""

from __future__ import annotations

from pathlib import Path

from pgpo.util.integrity import file_problem


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """None if the checkpoint is complete; else the first problem, naming its file."""
    ckpt = Path(checkpoint)
    if not (ckpt / "trainer_state.json").is_file():
        return "no trainer_state.json (the Trainer writes it last: killed or out of disk while saving)"
    for path in sorted(ckpt.rglob("*")):  # DeepSpeed's global_step*/ too
        if path.is_file():
            problem = file_problem(path)
            if problem:
                return f"{path.relative_to(ckpt)}: {problem}"
    return None


def holds_optimizer_state(checkpoint: str | Path) -> bool:
    """Whether a resume from it restores the optimizer (optimizer.pt, or DeepSpeed's global_step*/): a
    save_model_only checkpoint holds the weights alone."""
    ckpt = Path(checkpoint)
    return (ckpt / "optimizer.pt").is_file() or any(ckpt.glob("global_step*"))
