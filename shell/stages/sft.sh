#!/usr/bin/env bash
# Stage: the cold-start SFT (thor sft) on the filtered TIR data, with the recipe's settings.
#   Full size (one node of 8 GPUs, DeepSpeed ZeRO; across nodes: recipes/slurm/sft.sbatch):
#     RECIPES=recipes/qwen2.5-math-1.5b MODEL=Qwen/Qwen2.5-Math-1.5B OUT=runs/qwen2.5-math-1.5b \
#       ACCEL=recipes/accelerate/zero2.yaml NPROC=8 ./shell/stages/sft.sh
#   CPU (one process; ~5 s per step for SmolLM2-135M):
#     RECIPES=recipes/cpu MODEL=smollm2-135m OUT=runs/cpu ACCEL= ./shell/stages/sft.sh --max-steps 10
# Reads $OUT/gen.filtered.jsonl (shell/stages/gen.sh) and writes the run folder $OUT/sft; a rerun after a
# failure continues from the last checkpoint. Arguments go to thor sft (key=value settings too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RECIPES=${RECIPES:-recipes/qwen2.5-math-1.5b}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-1.5B}
OUT=${OUT:-runs/qwen2.5-math-1.5b}
ACCEL=${ACCEL-recipes/accelerate/zero2.yaml}   # empty: one process, no accelerate
NPROC=${NPROC:-8}                              # processes (GPUs) for accelerate
DATA=${DATA:-$OUT/gen.filtered.jsonl}

RESUME=(); [ -d "$OUT/sft" ] && RESUME=(--resume)   # a run folder from an earlier try: continue it
[ -f "$OUT/sft/config.json" ] && { echo "[sft] $OUT/sft is done (skipping)" >&2; exit 0; }

# ---- 1. SFT (full size: 29k samples x 1 epoch at global batch 256 = ~115 steps, 1-3 h on 8 GPUs; model ~3-16 GB) ----
if [ -n "$ACCEL" ]; then
  accelerate launch --config_file "$ACCEL" --num_processes "$NPROC" -m thor_cli sft --config "$RECIPES/sft.yaml" \
    --model "$MODEL" --output "$OUT/sft" "${RESUME[@]}" "$DATA" "$@"
else
  thor sft --config "$RECIPES/sft.yaml" --model "$MODEL" --output "$OUT/sft" "${RESUME[@]}" "$DATA" "$@"
fi
