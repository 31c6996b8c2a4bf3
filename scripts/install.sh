#!/usr/bin/env bash
# One-command install from the lock: a virtual environment with exactly the packages of
# requirements/lock-cpu.txt (every package, transitive ones included), the project in editable mode, the
# torchvision CPU shim, then the smoke check of every component the workflow runs (python -m pgpo.smoke).
# Usage: bash scripts/install.sh [--gpu] [--resolve]
#   --gpu      install requirements/lock-gpu.txt instead (Linux x86-64 + CUDA: torch, vLLM 0.31), then flash-attn
#   --resolve  resolve requirements/{constraints,cpu}.txt afresh instead of using the lock (scripts/refresh_lock.sh)
# Environment: PGPO_VENV (default .venv), PYTHON (default python3). Off this machine, CPU installs need
# PyTorch's CPU wheel index for torch==2.13.0+cpu: export PIP_EXTRA_INDEX_URL=<that index> first.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGPO_VENV:-.venv}
PY=${PYTHON:-python3}
GPU=0; RESOLVE=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --resolve) RESOLVE=1 ;;
    *) echo "install.sh: unknown argument $arg (usage: bash scripts/install.sh [--gpu] [--resolve])" >&2; exit 2 ;;
  esac
done

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
export DS_BUILD_OPS=0  # DeepSpeed: no CUDA op builds at install time (JIT on the GPU machine when used)
if [ "$RESOLVE" = 1 ]; then
  # torch pinned by the constraints file, or pip may pull a multi-GB CUDA build on a CPU machine
  "${PIP[@]}" install -c requirements/constraints.txt -r requirements/cpu.txt
  [ "$GPU" = 1 ] && "${PIP[@]}" install -c requirements/constraints.txt -r requirements/gpu.txt
else
  LOCK=requirements/lock-cpu.txt
  [ "$GPU" = 1 ] && LOCK=requirements/lock-gpu.txt
  # --no-deps: the lock is the whole environment; nothing outside it may be pulled in by a resolve
  grep -v -E '^flash-attn==' "$LOCK" > "$VENV/pgpo-lock.txt"
  "${PIP[@]}" install --no-deps -r "$VENV/pgpo-lock.txt"
  if [ "$GPU" = 1 ]; then
    # flash-attn ships only a source archive whose build imports torch: build it against the locked torch
    "${PIP[@]}" install --no-deps --no-build-isolation "$(grep -E '^flash-attn==' "$LOCK")"
  fi
fi
"${PIP[@]}" install --no-deps -e .
"$VENV/bin/python" -m pip check

# torchvision shim: a .pth line that runs only when torchvision is imported (see pgpo/_torchvision_shim.py).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp pgpo/_torchvision_shim.py "$SITE/_pgpo_torchvision_shim.py"
echo "import _pgpo_torchvision_shim; _pgpo_torchvision_shim.install()" > "$SITE/pgpo_torchvision_shim.pth"

# every component the workflow runs must import and work here, or the install fails naming the package
"$VENV/bin/python" -m pgpo.smoke
echo "pgpo install OK ($([ "$RESOLVE" = 1 ] && echo 'resolved afresh' || echo "from $LOCK")). Activate with: source $VENV/bin/activate"
