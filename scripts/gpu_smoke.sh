#!/usr/bin/env bash
# GPU smoke test on one GPU: the paths the CPU machines cannot run (vLLM rollouts and evaluation, bf16 kernels).
# Checks, each with its own timeout, one PASS/FAIL/SKIP line each, then a summary; exit 1 on any FAIL:
#   install      bash scripts/install.sh --gpu (the GPU lock, flash-attn, pgpo's smoke check)
#   build_tiny   pgpo build-tiny + a small pgpo make-data (the model and data every later check uses)
#   train_pgpo, train_vppo, train_papo
#                3 optimizer steps each, vLLM colocate rollouts, bf16; PASS needs 3 finite-loss steps logged
#                and the rollout engine's log-probs within 0.1 nats (mean) of the trainer's (PGPO_SMOKE_GAP_TOL)
#   eval_vllm    pgpo evaluate through lmms-eval's vLLM backend, 4 questions of every tiny suite, scored
#   blind_bf16   blind pass (image masked out of attention) == forward with the visual span deleted and the
#                original positions kept, on the GPU in bf16 (tolerance 0.05 on completion log-probs)
#   blind_fp32   the same in fp32 (tolerance 1e-3), where the check is sharp enough to catch a position shift
#   known_bugs   python -m pgpo.diagnostics.known_bugs: TRL #3847 (no vision token sampled in the three training runs: vLLM
#                suppressed them), TRL #5785 (image marks on image tokens; right padding detected), dynamic
#                sampling vs float rounding (equal-reward groups dropped with advantage exactly 0, on the GPU)
# Usage: bash scripts/gpu_smoke.sh [--cpu-dry] [--skip-install] [--list] [--work DIR]
#   --cpu-dry       no GPU: build the tiny model and data for real, validate every train/eval command's recipe
#                   and --set overrides without running them, run the blind check on CPU (fp32); install SKIPs
#   --skip-install  use the installed environment as it is (install SKIPs)
#   --list          print the check names and exit
# Environment: PGPO_VENV (default .venv; its python runs everything, else PGPO_PYTHON or python3).
# Expected wall time on an installed H200: well under 8 minutes (first install: flash-attn builds from source).
set -uo pipefail
cd "$(dirname "$0")/.."

CHECKS=(install build_tiny train_pgpo train_vppo train_papo eval_vllm blind_bf16 blind_fp32 known_bugs)
TRAIN_METHODS=(pgpo vppo papo)
declare -A TIMEOUT=([install]=1800 [build_tiny]=180 [train_pgpo]=240 [train_vppo]=240 [train_papo]=240
                    [eval_vllm]=300 [blind_bf16]=180 [blind_fp32]=180 [known_bugs]=180)

DRY=0; INSTALL=1; WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry) DRY=1; INSTALL=0 ;;
    --skip-install) INSTALL=0 ;;
    --list) printf '%s\n' "${CHECKS[@]}"; exit 0 ;;
    --work) WORK="$2"; shift ;;
    *) echo "gpu_smoke.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

VENV=${PGPO_VENV:-.venv}
PY=${PGPO_PYTHON:-$([ -x "$VENV/bin/python" ] && echo "$VENV/bin/python" || echo python3)}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/pgpo-gpu-smoke.XXXXXX")}
LOGS="$WORK/logs"
mkdir -p "$LOGS"
echo "gpu_smoke: logs and outputs under $LOGS (work dir $WORK)"
export TOKENIZERS_PARALLELISM=false

PASSED=0; FAILED=0; SKIPPED=0
# run_check NAME COMMAND...: runs COMMAND under NAME's timeout, its output in $LOGS/NAME.log
run_check() {
  local name=$1; shift
  local start=$SECONDS rc
  # bash -c runs the command in a child that `timeout` can kill; the helpers below reach it through export -f
  timeout --kill-after=30 "${TIMEOUT[$name]}" bash -c '"$@"' "$name" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    PASSED=$((PASSED + 1)); echo "PASS $name ($((SECONDS - start)) s)"
  else
    FAILED=$((FAILED + 1))
    local why="exit $rc"; [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${TIMEOUT[$name]} s"
    echo "FAIL $name ($why; log $LOGS/$name.log)"
  fi
}
skip_check() { SKIPPED=$((SKIPPED + 1)); echo "SKIP $1 ($2)"; }

train_args() {  # the exact `pgpo train` arguments of one method's check
  echo --method "$1" --config workflows/config/train/tiny.yaml --out "$WORK/runs/$1" --fresh \
    --set model.path="$WORK/model" --set data.train="$WORK/data/train.jsonl" \
    --set max_steps=3 --set save_steps=3 --set rollout.prompts_per_step=8 --set rollout.update_prompts=8 \
    --set rollout.use_vllm=true --set rollout.vllm_mode=colocate --set rollout.vllm_gpu_memory_utilization=0.3 \
    --set model.dtype=bfloat16
}
eval_args() {  # 4 questions per tiny suite, 2 samples each, through lmms-eval's vLLM model
  local ckpt="$WORK/runs/pgpo/final"; [ -d "$ckpt" ] || ckpt="$WORK/model"
  echo --checkpoint "$ckpt" --benchmarks tiny --samples 2 --config workflows/config/eval/tiny.yaml \
    --data "$WORK/data" --out "$WORK/eval" --overwrite \
    --set backend.name=vllm --set backend.dtype=bfloat16 --set backend.gpu_memory_utilization=0.5 --set limit=4
}

# The rollout engine's and the trainer's log-probs of the sampled tokens must agree (rollout_gap/mean_abs_logp,
# pgpo/training/engine_gap.py): finite losses alone pass on corrupted rollouts (TRL #6294: 1.46 nats). Both sides in bf16,
# different kernels: bf16 keeps 8 significant bits, so logits of size ~10 round by ~0.04 and log-probs differ by
# a few 1e-2 nats per token on average; 0.1 nats is well above that noise and an order below the corruption.
export GAP_TOL=${PGPO_SMOKE_GAP_TOL:-0.1}
train_check() {  # run 3 steps, then require 3 logged steps with a finite loss and engine/trainer agreement
  "$PY" -m pgpo.cli train $(train_args "$1") || return 1
  "$PY" - "$WORK/runs/$1/metrics.jsonl" "$GAP_TOL" <<'EOF'
import json, math, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows), rows
gaps = [r.get("rollout_gap/mean_abs_logp") for r in rows]
assert all(g is not None and g < float(sys.argv[2]) for g in gaps), \
    f"rollout engine vs trainer log-probs: mean |gap| per step {gaps} nats (tolerance {sys.argv[2]})"
print(f"{len(rows)} steps, losses {[r['loss'] for r in rows]}, engine-trainer mean |logp gap| {gaps}, "
      f"max {[r.get('rollout_gap/max_abs_logp') for r in rows]}")
EOF
}
eval_check() {  # every tiny suite sampled (4 questions x 2 samples) and scored
  "$PY" -m pgpo.cli evaluate $(eval_args) || return 1
  "$PY" - "$WORK/eval" <<'EOF'
import json, sys
from pathlib import Path
files = sorted(Path(sys.argv[1], "samples").glob("tiny_*.jsonl"))
assert len(files) == 8, files
for f in files:
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["responses"]) == 2 for r in rows), (f, rows)
print(f"{len(files)} suites x 4 questions x 2 samples")
EOF
}
validate() {  # --cpu-dry: the recipe and every override of a train/eval command must load (nothing runs)
  "$PY" - "$@" <<'EOF'
import sys
from pgpo.cli import _overrides
kind, args = sys.argv[1], sys.argv[2:]
sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
config = args[args.index("--config") + 1]
if kind == "train":
    from pgpo.config.schema import load_method, load_train_config
    cfg = load_train_config(config, _overrides(sets), load_method(args[args.index("--method") + 1]))
    assert cfg.rollout.use_vllm and cfg.model.dtype == "bfloat16" and cfg.max_steps == 3, cfg
else:
    from pgpo.evaluation.config import load_eval_config
    cfg = load_eval_config(config, _overrides(sets))
    assert cfg.backend.name == "vllm" and cfg.limit == 4, cfg
print(f"{kind}: {config} + {sets} is valid")
EOF
}
build() {
  "$PY" -m pgpo.cli build-tiny --out "$WORK/model" --seed 0 &&
    "$PY" -m pgpo.cli make-data --out "$WORK/data" --seed 0 --train-per-task 4 --warmstart-per-task 1 \
      --eval-per-task 4
}

export -f train_args eval_args train_check eval_check validate build
export PY WORK

if [ "$INSTALL" = 1 ]; then
  run_check install env PGPO_VENV="$VENV" bash scripts/install.sh --gpu
  export PY="$VENV/bin/python"
else
  skip_check install "$([ "$DRY" = 1 ] && echo '--cpu-dry' || echo '--skip-install'): using $PY"
fi
run_check build_tiny build
for m in "${TRAIN_METHODS[@]}"; do
  if [ "$DRY" = 1 ]; then run_check "train_$m" validate train $(train_args "$m")
  else run_check "train_$m" train_check "$m"; fi
done
if [ "$DRY" = 1 ]; then run_check eval_vllm validate eval $(eval_args)
else run_check eval_vllm eval_check; fi
if [ "$DRY" = 1 ]; then
  skip_check blind_bf16 "--cpu-dry: bf16 kernels are the GPU's"
  run_check blind_fp32 "$PY" -m pgpo.diagnostics.blind_check --model "$WORK/model" --data "$WORK/data" --dtype float32 --tol 1e-4
else
  run_check blind_bf16 "$PY" -m pgpo.diagnostics.blind_check --model "$WORK/model" --data "$WORK/data" --device cuda \
    --dtype bfloat16 --tol 0.05
  run_check blind_fp32 "$PY" -m pgpo.diagnostics.blind_check --model "$WORK/model" --data "$WORK/data" --device cuda \
    --dtype float32 --tol 1e-3
fi
if [ "$DRY" = 1 ]; then  # no training ran: the checks of the processor and of the rounding, on CPU
  run_check known_bugs "$PY" -m pgpo.diagnostics.known_bugs --model "$WORK/model" --data "$WORK/data"
else
  run_check known_bugs "$PY" -m pgpo.diagnostics.known_bugs --model "$WORK/model" --data "$WORK/data" --device cuda \
    --runs "${TRAIN_METHODS[@]/#/$WORK/runs/}"
fi

echo "gpu_smoke: $PASSED passed, $FAILED failed, $SKIPPED skipped ($([ "$DRY" = 1 ] && echo cpu-dry || echo gpu)); logs in $LOGS"
[ "$FAILED" -eq 0 ]
