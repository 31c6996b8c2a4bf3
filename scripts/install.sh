#!/usr/bin/env bash
# One-command install: a virtual environment with the pinned CPU stack, the package in editable mode and the
# torchvision CPU shim. GPU machines: add --gpu (installs vLLM on top; never triggered by the CPU install).
# Usage: bash scripts/install.sh [--gpu]     Environment: PGPO_VENV (default .venv), PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGPO_VENV:-.venv}
PY=${PYTHON:-python3}
GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    *) echo "install.sh: unknown argument $arg (usage: bash scripts/install.sh [--gpu])" >&2; exit 2 ;;
  esac
done

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
# One resolve, torch pinned by the constraints file (or pip may pull a multi-GB CUDA torch on a CPU machine).
DS_BUILD_OPS=0 "${PIP[@]}" install --disable-pip-version-check -q \
  -c requirements/constraints.txt -r requirements/cpu.txt -e .
if [ "$GPU" = 1 ]; then
  "${PIP[@]}" install --disable-pip-version-check -q -c requirements/constraints.txt -r requirements/gpu.txt
fi
# torchvision shim: a .pth line that runs only when torchvision is imported (see pgpo/_torchvision_shim.py).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp pgpo/_torchvision_shim.py "$SITE/_pgpo_torchvision_shim.py"
echo "import _pgpo_torchvision_shim; _pgpo_torchvision_shim.install()" > "$SITE/pgpo_torchvision_shim.pth"
"$VENV/bin/python" - <<'PY'
import torchvision  # noqa: F401  (fails here, not later, if the shim is broken)
from transformers import Qwen2_5_VLProcessor  # noqa: F401
import trl
print(f"pgpo install OK: torch {__import__('torch').__version__}, trl {trl.__version__}")
PY
echo "Activate with: source $VENV/bin/activate"
