#!/usr/bin/env bash
# The whole test suite on a fresh clone: set up (see setup.sh), lint (ruff, mypy), then pytest.
#   ./shell/test.sh                 everything (unit, CLI end to end, slow)
#   ./shell/test.sh -m "not slow"   the fast tiers only; any pytest arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./shell/setup.sh
echo "[test] lint: ruff check, mypy" >&2
.venv/bin/ruff check src tests bench
.venv/bin/mypy src
echo "[test] running pytest $*" >&2
exec .venv/bin/python -m pytest "$@"
