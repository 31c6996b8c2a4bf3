#!/usr/bin/env bash
# Copy the tiny profile's small outputs (tables, figures, report) into results/tiny/reference/ for committing.
set -euo pipefail
src=${1:-results/tiny}
dst=results/tiny/reference
mkdir -p "$dst"
for f in table1 table7 ablation_thresholds; do
  for ext in md csv png; do
    [ -f "$src/$f.$ext" ] && cp "$src/$f.$ext" "$dst/"
  done
done
for ext in png html; do
  [ -f "$src/reports/dependency.$ext" ] && cp "$src/reports/dependency.$ext" "$dst/"
done
python - "$src" "$dst" <<'PY'
import sys
from pgpo.workflow_report import stage_times
src, dst = sys.argv[1], sys.argv[2]
open(f"{dst}/stage_times.txt", "w").write(stage_times(f"{src}/benchmarks", float("nan")) + "\n")
PY
ls -la "$dst"
