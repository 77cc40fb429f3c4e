#!/usr/bin/env bash
# Stage: TIR training data. TIRGen (thor gen: the policy as the actor, a critic that turns computation
# into cells) and THOR's multi-stage filter (thor gen filter), with the recipe's settings.
#   Full size (a GPU for the actor, a critic server; see recipes/<model>/gen.yaml):
#     RECIPES=recipes/qwen2.5-math-1.5b MODEL=Qwen/Qwen2.5-Math-1.5B OUT=runs/qwen2.5-math-1.5b \
#       ./shell/stages/gen.sh runs/data/train.jsonl --critic-base-url http://CRITIC_NODE:8000/v1
#   CPU (SmolLM2-135M, the arithmetic critic; ~4 s per problem):
#     RECIPES=recipes/cpu MODEL=smollm2-135m OUT=runs/cpu ./shell/stages/gen.sh runs/cpu/data/train.jsonl --limit 16
# Arguments after the problems go to thor gen. A rerun resumes (--resume). On Slurm: recipes/slurm/gen.sbatch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RECIPES=${RECIPES:-recipes/qwen2.5-math-1.5b}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-1.5B}
OUT=${OUT:-runs/qwen2.5-math-1.5b}
PROBLEMS=${1:?usage: gen.sh PROBLEMS.jsonl [thor gen args...]}; shift

# ---- 1. TIRGen (full size: ~1 h per 1,000 problems on one GPU with 8 tries; output ~50 KB per kept sample) ----
thor gen --config "$RECIPES/gen.yaml" --model "$MODEL" "$PROBLEMS" -o "$OUT/gen.jsonl" --resume "$@"

# ---- 2. THOR's filter (seconds per 10,000 records): correct, cells ran, \boxed, code quality, one per problem ----
thor gen filter "$OUT/gen.jsonl" -o "$OUT/gen.filtered.jsonl" --summary "$OUT/filter.summary.json"
