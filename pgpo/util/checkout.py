"""Which checkout's code a workflow job runs.

The Snakefile plans with its own checkout's pgpo/ and baselines/ (Snakemake puts the Snakefile's folder first on
sys.path). A job runs a `pgpo` command, and the interpreter's editable install may point to another checkout: a
method YAML added in one checkout passed the dry run, then the job said "unknown method". So every job command
puts the planning checkout first on PYTHONPATH and names it in PGPO_CHECKOUT (pgpo.workflow.launch.job_command);
`pgpo` refuses to run a job whose code still comes from elsewhere (a pgpo/ folder in the working directory of a
`python -m pgpo.cli` launch, a launch wrapper that drops PYTHONPATH), naming both paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgpo.util.errors import UserError

CHECKOUT_ENV = "PGPO_CHECKOUT"
"""The checkout (folder holding pgpo/ and the Snakefile) that planned the running job; unset outside the workflow."""


def running_checkout() -> Path:
    """The folder the imported pgpo package lies in."""
    import pgpo

    return Path(pgpo.__file__).resolve().parent.parent


def check_checkout(environ=None) -> None:
    """UserError when a workflow job (CHECKOUT_ENV set) imports pgpo from another checkout than the one that
    planned it; nothing outside the workflow."""
    planned = (os.environ if environ is None else environ).get(CHECKOUT_ENV)
    if not planned:
        return
    running = running_checkout()
    if Path(planned).resolve() != running:
        raise UserError(f"this workflow job was planned by the checkout {planned} but imports pgpo from {running}; "
                        f"run Snakemake from a directory outside {running}, or let the launch command keep "
                        f"PYTHONPATH={planned} (the job's code must be the code that planned it)")
