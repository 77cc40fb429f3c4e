#!/usr/bin/env bash
# Stage: RL (thor rl) from the SFT model: THOR's hierarchical RL (ALGO=thor) or TAPO (ALGO=tapo), with
# the recipe's settings.
#   Full size (one node; the three-node layout is recipes/slurm/rl.sbatch):
#     RECIPES=recipes/qwen2.5-math-1.5b OUT=runs/qwen2.5-math-1.5b ./shell/stages/rl.sh runs/data/rl.jsonl
#   CPU (SmolLM2-135M after the cpu SFT; ~2 min per step):
#     RECIPES=recipes/cpu OUT=runs/cpu ./shell/stages/rl.sh runs/cpu/data/train.jsonl steps=2
# Reads the policy from $OUT/sft, writes $OUT/rl (or rl-tapo); a rerun continues from the last
# checkpoint. Arguments after the problems go to thor rl (key=value settings too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RECIPES=${RECIPES:-recipes/qwen2.5-math-1.5b}
OUT=${OUT:-runs/qwen2.5-math-1.5b}
ALGO=${ALGO:-thor}                        # thor | tapo
POLICY=${POLICY:-$OUT/sft}
RUN=$OUT/rl; [ "$ALGO" = tapo ] && RUN=$OUT/rl-tapo
PROBLEMS=${1:?usage: rl.sh PROBLEMS.jsonl [thor rl args...]}; shift

RESUME=(); [ -d "$RUN" ] && RESUME=(--resume)
[ -f "$RUN/config.json" ] && { echo "[rl] $RUN is done (skipping)" >&2; exit 0; }

# ---- 1. RL (full size: 300 steps x 32 prompts x 16 rollouts, ~1-2 days on 16 H200s; checkpoints every 25 steps) ----
thor rl --config "$RECIPES/rl-$ALGO.yaml" --model "$POLICY" --output "$RUN" "${RESUME[@]}" "$PROBLEMS" "$@"
