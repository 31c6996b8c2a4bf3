"""Commands the workflow runs, bound to the interpreter that runs Snakemake (not to the shell's PATH) and to the
checkout that planned them.

`.venv/bin/snakemake ...` without an activated venv must still run the venv's `pgpo` (and `accelerate`): the
first word of a configured command is replaced by the script of that name next to `sys.executable` when one is
there; anything else (an absolute path, `srun ...`, a tool the user put on PATH) is left as written.

The venv's `pgpo` imports whichever checkout it was installed from, not necessarily the one whose Snakefile
planned the job: `job_command` runs the command with that checkout first on PYTHONPATH (pgpo.util.checkout).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from pgpo.util.checkout import CHECKOUT_ENV


def _bin_dir(bin_dir: str | Path | None) -> Path:
    # unresolved: a venv's python is a symlink out of the venv, its scripts live next to the link
    return Path(bin_dir) if bin_dir is not None else Path(sys.executable).parent


_REPO_FILE = re.compile(r"(?<![^\s=])([\w.-]+(?:/[\w.-]+)+)(?=$|\s)")
"""A relative path word (`a/b.yaml`, also after `--opt=`), left of a space or the end: the rest of the command,
shell syntax and quoting included, stays as written."""


def _absolute(match: re.Match, repo: Path) -> str:
    word = match.group(1)
    return shlex.quote(str(repo / word)) if (repo / word).is_file() else word


def bind(command: str, bin_dir: str | Path | None = None, repo: str | Path | None = None) -> str:
    """'pgpo train --x' -> '/abs/.venv/bin/pgpo train --x' when bin_dir (default: the running interpreter's
    directory) has a `pgpo` script; a `pgpo` command with no script there runs as `<python> -m pgpo.cli`. With
    `repo`, a relative path word in the command that names a file of the repository (`--config_file
    workflows/config/accelerate/zero3.yaml`, `--config_file=...`) becomes absolute, the rest of the command
    untouched: the jobs run in the workflow's directory, which need not be the checkout."""
    if repo is not None:
        command = _REPO_FILE.sub(lambda m: _absolute(m, Path(repo)), command)
    head, sep, rest = command.strip().partition(" ")
    if not head or "/" in head:
        return command
    script = _bin_dir(bin_dir) / head
    if script.is_file():
        return shlex.quote(str(script.absolute())) + sep + rest
    if head == "pgpo":
        return f"{shlex.quote(sys.executable)} -m pgpo.cli" + sep + rest
    return command


def job_command(command: str, repo: str | Path, bin_dir: str | Path | None = None) -> str:
    """`bind(command, bin_dir, repo)` run with the code of `repo`, the checkout that planned the job:
    'export PYTHONPATH=<repo>${PYTHONPATH:+:$PYTHONPATH} PGPO_CHECKOUT=<repo>; <bound command>'.

    An environment setting, not a different interpreter or a `cd`: it reaches every process the command starts
    (`accelerate launch`'s ranks, `srun`'s tasks, lmms-eval's) and under the Slurm executor it is set on the compute
    node, whose job step re-parses this checkout's Snakefile on the same file system. PYTHONPATH comes before the
    venv's editable install on sys.path; `python -m` puts the working directory before it, which `pgpo` itself
    then refuses (pgpo.util.checkout.check_checkout, through PGPO_CHECKOUT). `export ...;` rather than `VAR=x cmd`:
    a launch line may be several shell commands (`cd x && ...`)."""
    here = shlex.quote(str(Path(repo).absolute()))
    return (f'export PYTHONPATH={here}"${{PYTHONPATH:+:$PYTHONPATH}}" {CHECKOUT_ENV}={here}; '
            + bind(command, bin_dir, repo=repo))
