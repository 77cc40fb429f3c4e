#!/usr/bin/env bash
# The whole test suite on a fresh clone: set up (see setup.sh), then pytest.
#   ./shell/test.sh                 everything (unit, CLI end to end, slow)
#   ./shell/test.sh -m "not slow"   the fast tiers only; any pytest arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./shell/setup.sh
echo "[test] running pytest $*" >&2
exec .venv/bin/python -m pytest "$@"
