#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm tests (tests/slurm) and for trying the
# recipes/slurm/cpu scripts by hand. Debian's slurm-wlm and munge; the configuration of
# ../shared/docs/FACTS.md ("Slurm"), with this machine's hostname, cores and memory.
#   ./shell/setup-slurm.sh          install (first time ~20 s, root), configure, start; idempotent
#   ./shell/setup-slurm.sh stop     stop the daemons this script started
# Exit 0 when `sinfo` shows the node up; non-zero, with the reason on stderr, when it cannot be
# done here (not root, no apt-get, a daemon that does not start).
set -euo pipefail

say() { echo "[setup-slurm] $*" >&2; }
die() { say "$*"; exit 1; }
RUN=/run/thor-slurm                     # pid files of the daemons started here
CONF=/etc/slurm/slurm.conf

if [ "${1:-}" = stop ]; then
  # ---- stop (< 1 s): the daemons started here, by their pid files ----
  for name in slurmd slurmctld munged; do
    pidf="$RUN/$name.pid"; [ "$name" = munged ] && pidf=/run/munge/munged.pid
    if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      pid=$(cat "$pidf"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done   # gone within 10 s
      say "stopped $name"
    fi
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (installs packages, starts munged, slurmctld and slurmd)"

# ---- 1. packages (~20 s the first time, then skipped) ----
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurm-wlm is not installed and there is no apt-get"
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; } \
    || die "apt-get install slurm-wlm munge failed"
fi

# ---- 2. configuration (< 1 s): rewritten only when it changes ----
HOST=$(hostname)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))   # 80% of the memory
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$RUN"
WANT=$(cat <<EOF
# written by thor's shell/setup-slurm.sh: one node, this machine
ClusterName=thor
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=5
MinJobAge=60
DefMemPerCPU=$(( MEM_MB / CPUS ))
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
CHANGED=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
  echo "$WANT" > "$CONF"; CHANGED=1; say "wrote $CONF ($HOST, $CPUS CPUs, $MEM_MB MB)"
fi
# cgroup/v1 is what 22.05 accepts here ("disabled" does not exist); TaskPlugin=task/none never uses it
echo "CgroupPlugin=cgroup/v1" > /etc/slurm/cgroup.conf

# ---- 3. munge (< 1 s), as user munge ----
if ! pgrep -u munge -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey -f 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  say "started munged"
fi

# ---- 4. slurmctld and slurmd (~2 s); restarted when the configuration changed ----
running() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
if [ "$CHANGED" = 1 ]; then
  for d in slurmd slurmctld; do running "$d" && kill "$(cat "$RUN/$d.pid")"; done
  sleep 1
fi
running slurmctld || { /usr/sbin/slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; say "started slurmctld"; }
running slurmd || { /usr/sbin/slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"; say "started slurmd"; }

# ---- 5. wait until the node takes jobs (~2 s) ----
for _ in $(seq 60); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
  case "$state" in idle*|mixed*|allocated*) say "ready: node $HOST is $state"; exit 0 ;; esac
  sleep 0.5
done
die "the node did not come up (sinfo: ${state:-no answer}; see /var/log/slurm/)"
