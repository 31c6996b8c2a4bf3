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
# the wall time of the invocation that produced them (written by the Snakefile's onsuccess)
[ -f "$src/stage_times.txt" ] && cp "$src/stage_times.txt" "$dst/"
ls -la "$dst"
