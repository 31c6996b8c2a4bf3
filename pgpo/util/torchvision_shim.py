"""Import hook that lets PyPI's CUDA-linked torchvision import on a CPU-only torch.

PyPI has no CPU build of torchvision 0.28; its compiled ``_C`` library fails to load against the CPU torch and
``import torchvision`` then dies in ``register_fake("torchvision::nms")`` ("operator does not exist"). That breaks
the Qwen2.5-VL processor (its video processor imports torchvision) and lmms-eval. Before torchvision imports we try
its library; only if that fails we declare schema-only ``nms``/``qnms`` ops so the import succeeds. Detection ops
stay unusable (nothing here needs them). On a GPU machine the library loads and this does nothing.

Installed by scripts/install.sh as a ``.pth`` line in site-packages; it imports torch only when torchvision is
imported, never at interpreter start.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_LIBRARY = None  # keep the torch.library.Library alive: dropping it unregisters the schemas


class _TorchvisionOpsFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)  # one shot: from here on the normal finders do the import
        _declare_ops_if_library_missing()
        return None


def _declare_ops_if_library_missing() -> None:
    global _LIBRARY
    import glob
    import os

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    libs = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*.so"))
    try:
        if libs:
            torch.ops.load_library(libs[0])
            return
    except (OSError, RuntimeError):
        pass
    if hasattr(torch.ops.torchvision, "nms"):
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def install() -> None:
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionOpsFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionOpsFinder())
