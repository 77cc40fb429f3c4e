#!/usr/bin/env bash
# Set up thor on a fresh machine: .venv with thor and its dev tools, and what the sandbox needs.
# Idempotent: a second run skips finished steps (a stamp holds the hash of pyproject.toml).
# Sourced by demo.sh and test.sh; run it alone to just set up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[setup] $*" >&2; }
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.thor-installed
WANT=$(cat pyproject.toml shell/setup.sh | sha256sum | cut -c1-16)
# pip prints a warning per missing local index folder on these machines; keep the log readable
quiet_pip() { "$VENV/bin/pip" "$@" 2>&1 | grep -v "is ignored: it is neither" >&2 || true; }

# ---- 1. virtual environment (~5 s) ----
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi

# ---- 2. python packages (~100 s the first time, then skipped) ----
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing torch 2.13.0 (the CPU build) first, so nothing pulls a CUDA build"
  quiet_pip install -q --upgrade pip
  quiet_pip install -q "torch==2.13.0"
  say "installing thor and its dev tools (pip install -e .[dev])"
  quiet_pip install -q -e ".[dev]"
  "$VENV/bin/thor" --version >/dev/null || { say "install failed"; exit 1; }
  echo "$WANT" > "$STAMP"
else
  say "python packages up to date (skipping)"
fi

# ---- 3. sandbox prerequisites (root only; ~20 s the first time) ----
if [ -x shell/setup-sandbox.sh ]; then
  ./shell/setup-sandbox.sh
fi
say "ready: $VENV/bin/thor"
