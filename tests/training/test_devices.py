"""Device correctness without a GPU: every tensor factory on the RL training path names its device.

A factory without `device=` makes a CPU tensor; mixed into CUDA tensors by gather/scatter_ or indexing it crashes
only on a GPU (VPPO's top_fraction_mask scattered a CPU arange into CUDA scores). On this CPU-only torch build
neither FakeTensorMode nor the meta device catches a CPU index tensor given to scatter_, so the check is static.
"""

import ast

from pgpo.config.schema import REPO

# the code PGPOTrainer runs on the accelerator: every module of the training and methods packages, at any depth
# (rollout, blind views, shaping, loss terms, dynamic sampling), and the HF sampler
TRAINING_PATH = sorted(str(p.relative_to(REPO / "pgpo")) for pkg in ("training", "methods")
                       for p in (REPO / "pgpo" / pkg).rglob("*.py")) + ["tiny/sampling.py"]
FACTORIES = {"arange", "zeros", "ones", "empty", "full", "tensor", "rand", "randn", "randint", "linspace", "eye",
             "as_tensor", "randperm"}


def factories_without_device(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_scan_covers_the_training_path():
    for module in ("training/trainer.py", "training/dynamic_sampling.py", "methods/shaping.py", "methods/blind.py",
                   "methods/dependency.py", "methods/loss_terms.py", "tiny/sampling.py"):
        assert module in TRAINING_PATH, module


def test_every_tensor_factory_on_the_training_path_names_its_device():
    found = [f"pgpo/{name}:{line}" for name in TRAINING_PATH
             for line in factories_without_device((REPO / "pgpo" / name).read_text())]
    assert found == [], "tensor factories without device= (CPU tensors on a GPU run): " + ", ".join(found)


def test_the_check_sees_the_vppo_bug():
    buggy = "rank = torch.empty_like(o).scatter_(-1, o, torch.arange(s.size(-1)).expand_as(o))\n"
    fixed = "rank = torch.empty_like(o).scatter_(-1, o, torch.arange(s.size(-1), device=s.device).expand_as(o))\n"
    assert factories_without_device(buggy) == [1] and factories_without_device(fixed) == []
