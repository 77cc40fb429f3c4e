#!/usr/bin/env bash
# thor's main job, end to end on embedded defaults (CPU, no server, no GPU).
# Each step is a thor command; the JSONL between them lands in runs/demo/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./shell/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT=${OUT:-runs/demo}
mkdir -p "$OUT"
step() { echo "[demo] $*" >&2; }

# ---- 1. benchmarks ship inside thor ----
step "benchmarks in the package"
thor data list >&2
