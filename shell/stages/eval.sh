#!/usr/bin/env bash
# Stage: evaluate one model (thor eval) with the recipe's settings; records, a summary, and the
# stats table on stderr.
#   Full size (the paper's six benchmarks, avg@4; one GPU):
#     RECIPES=recipes/qwen2.5-math-1.5b OUT=runs/qwen2.5-math-1.5b ./shell/stages/eval.sh rl runs/qwen2.5-math-1.5b/rl
#   CPU (problem files instead of benchmarks):
#     RECIPES=recipes/cpu OUT=runs/cpu ./shell/stages/eval.sh base smollm2-135m runs/cpu/data/test.jsonl
# Writes $OUT/eval-NAME.jsonl and $OUT/eval-NAME.summary.json; a rerun resumes. Arguments after the
# model go to thor eval (problem files, flags). On Slurm, sharded: recipes/slurm/eval.sbatch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RECIPES=${RECIPES:-recipes/qwen2.5-math-1.5b}
OUT=${OUT:-runs/qwen2.5-math-1.5b}
NAME=${1:?usage: eval.sh NAME MODEL [thor eval args...]}
MODEL=${2:?usage: eval.sh NAME MODEL [thor eval args...]}; shift 2

# ---- 1. eval (full size: 2,1k problems x 4 samples, ~1-2 h on one GPU with vLLM; ~10 KB per record) ----
thor eval --config "$RECIPES/eval.yaml" --model "$MODEL" -o "$OUT/eval-$NAME.jsonl" \
  --summary "$OUT/eval-$NAME.summary.json" --resume "$@"
