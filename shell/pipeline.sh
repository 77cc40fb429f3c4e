#!/usr/bin/env bash
# THOR's whole pipeline on one model with the recipes: data, TIRGen, filter, SFT, RL, eval, report.
# Each step is a shell/stages/*.sh script (runnable alone) or one thor command; a rerun resumes.
#   Full size, on a GPU node (8 GPUs; a critic server for TIRGen, e.g. vllm serve Qwen/Qwen3-32B):
#     MODEL_NAME=qwen2.5-math-1.5b MODEL=Qwen/Qwen2.5-Math-1.5B CRITIC_URL=http://CRITIC_NODE:8000/v1 ./shell/pipeline.sh
#   Small, on a CPU (SmolLM2-135M, arithmetic, the recipes/cpu set; ~30 min on 2 cores):
#     MODEL_NAME=cpu MODEL=smollm2-135m ./shell/pipeline.sh
# Across a Slurm cluster the same stages are recipes/slurm/*.sbatch. Not run here at full size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH" TOKENIZERS_PARALLELISM=false

MODEL_NAME=${MODEL_NAME:-qwen2.5-math-1.5b}          # a folder of recipes/: qwen2.5-math-1.5b, qwen2.5-math-7b, qwen3-1.7b, qwen3-8b, cpu
MODEL=${MODEL:-Qwen/Qwen2.5-Math-1.5B}               # the base model (HF id, folder or cached name)
export RECIPES=recipes/$MODEL_NAME MODEL
export OUT=${OUT:-runs/$MODEL_NAME}
CRITIC_URL=${CRITIC_URL:-http://localhost:8000/v1}   # full size: the TIRGen critic's server
mkdir -p "$OUT/data"
say() { printf '\n[pipeline] %s\n' "$*" >&2; }

# ---- 1. data (full size: DeepScaleR-40k from the hub, ~1 min, 20 MB; cpu: synthetic arithmetic, < 1 s) ----
say "1. data"
if [ "$MODEL_NAME" = cpu ]; then
  [ -f "$OUT/data/train.jsonl" ] || thor data synth arithmetic --splits train=200,test=32,hard=32 --out-dir "$OUT/data"
  GEN_ARGS=(--limit 32); EVAL_INPUTS=("$OUT/data/test.jsonl" "$OUT/data/hard.jsonl"); SFT_ARGS=(); export ACCEL=
else
  # the paper's TIRGen sources: DAPO-17k, DeepMath-103k, DeepScaleR-40k (one here); RL: ToRL-28k (replace)
  [ -f "$OUT/data/train.jsonl" ] || thor data convert agentica-org/DeepScaleR-Preview-Dataset --split train \
    --question-field problem --answer-field answer -o "$OUT/data/train.jsonl"
  GEN_ARGS=(--critic-base-url "$CRITIC_URL"); EVAL_INPUTS=(); SFT_ARGS=()
fi

# ---- 2-3. TIRGen and the filter (full size: hours per 10k problems on one GPU; cpu: ~2 min for 32) ----
say "2. thor gen, 3. thor gen filter"
./shell/stages/gen.sh "$OUT/data/train.jsonl" "${GEN_ARGS[@]}"

# ---- 4. SFT, the cold start (full size: 1-3 h on 8 GPUs; cpu: 40 steps, ~4 min) ----
say "4. thor sft"
./shell/stages/sft.sh "${SFT_ARGS[@]}"

# ---- 5. RL, THOR's (full size: 1-2 days on 16 GPUs; cpu: 3 steps, ~6 min) ----
say "5. thor rl"
./shell/stages/rl.sh "$OUT/data/train.jsonl"

# ---- 6. eval: the base model, after SFT, after RL (full size: 1-2 h each on one GPU; cpu: ~1 min each) ----
for name in base sft rl; do
  model=$MODEL; [ "$name" != base ] && model=$OUT/$name
  say "6. thor eval: $name"
  ./shell/stages/eval.sh "$name" "$model" "${EVAL_INPUTS[@]}"
done

# ---- 7. report (seconds): the stats of each model's records into $OUT/report.md ----
say "7. report"
for name in base sft rl; do
  echo "## $name"; thor show --stats "$OUT/eval-$name.jsonl" 2>&1
done > "$OUT/report.md"
say "done: $OUT/report.md"
