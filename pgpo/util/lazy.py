"""A module imported at its first use, not where it is named.

The component registries (pgpo.methods) register their functions when their modules are imported, and config
validation (`pgpo methods`, `snakemake -n`) imports those modules for the registered names and parameter classes
only; importing torch costs seconds of CPU. So such a module names torch lazily and the functions that compute
with it import it when they first run:

    if TYPE_CHECKING:
        import torch
    else:
        torch = LazyModule("torch")

Nothing is put in sys.modules before the real import, so `"torch" in sys.modules` still means torch is loaded.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module `name`: the first attribute read imports it (then every read goes to it)."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:  # called only for names not set in __init__
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (imported)' if self._module is not None else ''}>"


def no_grad(fn):
    """`@torch.no_grad()` without importing torch where the function is defined (it is imported on the first call)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
