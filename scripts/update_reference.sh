#!/usr/bin/env bash
# Copy the tiny profile's small outputs (tables, figures, report) into results/tiny/reference/ for committing.
set -euo pipefail
src=${1:-results/tiny}
dst=results/tiny/reference
mkdir -p "$dst"
for f in table1 table7 ablation_thresholds; do
  # tables, the per-benchmark bars (the ablation draws a heatmap instead) and the training curves
  for ext in md csv html png heatmap.png curves.png; do
    if [ -f "$src/$f.$ext" ]; then cp "$src/$f.$ext" "$dst/"; fi
  done
done
# the ablation's bar chart was replaced by its heatmap: drop a stale copy
if [ -f "$src/ablation_thresholds.heatmap.png" ]; then rm -f "$dst/ablation_thresholds.png"; fi
if [ -f "$src/warmstart.png" ]; then cp "$src/warmstart.png" "$dst/"; fi
for ext in png html; do
  if [ -f "$src/reports/dependency.$ext" ]; then cp "$src/reports/dependency.$ext" "$dst/"; fi
done
# the wall time of the invocation that produced them (written by the Snakefile's onsuccess)
if [ -f "$src/stage_times.txt" ]; then cp "$src/stage_times.txt" "$dst/"; fi
ls -la "$dst"
