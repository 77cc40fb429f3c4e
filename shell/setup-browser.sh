#!/usr/bin/env bash
# Headless Chromium for the browser tests of `thor show --html` (tests/show/test_html_browser.py,
# marker `browser`). Debian's packages: chromium + chromium-driver (selenium drives it through
# /usr/bin/chromedriver; nothing is downloaded by selenium or playwright). Safe to rerun: instant
# when both are there. Measured: ~26 s on a fresh Debian 12 container (apt-get update included,
# ~120 packages with recommends; --no-install-recommends installs fewer). Called by the test
# session (tests/show/conftest.py) unless THOR_SETUP_BROWSER=0; exits 1 if it cannot install.
set -euo pipefail

say() { echo "[setup-browser] $*" >&2; }

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  say "not root: cannot install chromium; ask an administrator to run: apt-get install chromium chromium-driver"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get: install chromium and its chromedriver (same version) yourself"
  exit 1
fi

# ---- 1. package lists (only when chromium is not in them yet; ~5 s) ----
if ! apt-cache policy chromium-driver 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  say "apt-get update"
  apt-get update -qq >/dev/null
fi

# ---- 2. chromium + chromium-driver (~20 s, ~300 MB on disk) ----
say "installing chromium chromium-driver"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
say "ready: $(chromium --version 2>/dev/null | head -1)"
