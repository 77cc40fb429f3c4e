#!/usr/bin/env bash
# What thor's sandbox (nsjail) needs from the machine; called by shell/setup.sh, safe to rerun.
# As root: the uidmap package (newuidmap/newgidmap, for non-root users of subordinate uid ranges),
# subuid/subgid ranges for root, and the cgroup v1 folders nsjail puts each worker in.
# Quiet and fast (< 1 s) when everything is already there. Without root: says what stays off.
set -euo pipefail

say() { echo "[setup-sandbox] $*" >&2; }

if [ "$(id -u)" != "0" ]; then
  say "not root: cannot install uidmap, add subuid ranges or create cgroup folders."
  say "thor exec still runs in nsjail (user, pid, mount, net, ipc, uts namespaces; rlimits), but OFF are:"
  say "  per-session uids (sessions of one worker share a uid and its process limit),"
  say "  per-worker pids/memory cgroups (a fork bomb is bounded by rlimits only)."
  say "ask an administrator to run shell/setup-sandbox.sh as root for full isolation."
  exit 0
fi

# ---- 1. uidmap (newuidmap/newgidmap; ~5 s when apt must run, else skipped) ----
if ! command -v newuidmap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    if ! apt-cache policy uidmap 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      say "apt-get update (uidmap not in the package lists yet)"
      apt-get update -qq >/dev/null
    fi
    say "installing uidmap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq uidmap >/dev/null
  else
    say "no apt-get: install newuidmap/newgidmap (package uidmap or shadow) yourself"
  fi
fi

# ---- 2. subordinate uid/gid ranges for root (the jails map 100000.. ; instant) ----
for f in /etc/subuid /etc/subgid; do
  if ! grep -qs '^root:100000:' "$f"; then
    say "adding root:100000:65536 to $f"
    echo "root:100000:65536" >> "$f"
  fi
done

# ---- 3. cgroup v1 folders for nsjail's per-worker memory/pids/cpu limits (instant) ----
if [ -d /sys/fs/cgroup/memory ] || [ -d /sys/fs/cgroup/pids ]; then
  for ctl in memory pids cpu; do
    if [ -d "/sys/fs/cgroup/$ctl" ] && [ ! -d "/sys/fs/cgroup/$ctl/NSJAIL" ]; then
      say "creating /sys/fs/cgroup/$ctl/NSJAIL"
      mkdir "/sys/fs/cgroup/$ctl/NSJAIL" || say "could not create /sys/fs/cgroup/$ctl/NSJAIL (read-only cgroupfs?)"
    fi
  done
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  say "cgroup v2 only: thor's per-worker cgroups stay off (rlimits still bound each session)"
fi

# ---- 4. the sandbox's own CPython 3.12+ (~20 s the first time; skipped where there is none) ----
./shell/setup-sandbox-python.sh || say "the sandbox's own python could not be set up: the sandbox uses /usr/bin/python3"
