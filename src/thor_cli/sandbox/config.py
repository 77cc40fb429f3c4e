"""SandboxConfig: every limit and knob of the sandbox, with defaults that suit RL rollouts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "OPENBLAS_NUM_THREADS": "1",  # OpenBLAS's thread pool would not fit the memory limit
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}


@dataclass
class SandboxConfig:
    """Limits of one sandbox pool. Per session unless said otherwise.

    ``timeout``: wall-clock seconds per cell (a run's own timeout wins). ``memory_mb``: address
    space of a session (numpy and sympy need about 256). ``workers``: cells that execute at once,
    and warm jailed interpreters (None = number of cores). ``max_output``: characters kept of a
    cell's stdout and of its stderr (head and tail, marked when cut).
    """

    timeout: float = 10.0
    memory_mb: int = 1024
    workers: int | None = None
    max_output: int = 10_000
    cpu_s: int = 600  # CPU seconds over a session's whole life (RLIMIT_CPU)
    nproc: int = 64  # processes per session (RLIMIT_NPROC of the session's own uid)
    file_mb: int = 64  # largest file a session may write (RLIMIT_FSIZE)
    tmpfs_mb: int = 64  # the session's private /tmp
    nofile: int = 256  # open files per process
    preload: tuple[str, ...] = ("numpy", "sympy")  # imported once in the warm interpreter
    session_net: bool = True  # own network namespace per session (else sessions of a worker share lo);
    # a namespace is reused once its session has ended and no socket is left in it (zygote.NetPool)
    seccomp: bool = True  # per-session filter: no nested namespaces, mount, ptrace, bpf, kernel keyrings...
    hugepages: bool = True  # back the warm heap with huge pages: cheaper forks and exits (Linux 6.1+)
    immortal: bool = True  # make the warm heap immortal (CPython 3.12/3.13): a session's use of an object
    # no longer copies its page (zygote.immortalize)
    python: str | None = None  # interpreter in the jail (a venv's python too; "system": /usr/bin/python3
    # with this venv's site-packages); None: $THOR_SANDBOX_PYTHON, else /opt/thor/sandbox/bin/python
    # (shell/setup-sandbox-python.sh) when there, else "system". Mounted read-only at its own path
    site_dirs: tuple[str, ...] | None = None  # mounted read-only at /sb/site{i}; None: the chosen
    # interpreter's own site-packages, else this venv's
    jail: bool = True  # False: no nsjail at all (rlimits and uids only); logged loudly
    uid_range: bool | None = None  # a uid per session (needs root); None: when root
    cgroups: bool | None = None  # per-worker memory/pids cgroups (v1); None: when set up
    worker_pids: int = 2048  # pids cgroup of a worker (all its sessions)
    worker_memory_mb: int | None = None  # memory cgroup of a worker; None: no cap beyond rlimits
    pin_cells: bool = True  # each executing cell on a core no other cell runs on (when workers >= cores)
    slice_s: float = 0.0  # batch throughput: a session whose next cell already waits keeps its slot up
    # to this long while others wait (slots.py); 0 = strict turns, the lowest tail latency
    grace: float = 0.5  # after timeout + grace a cell that ignored its timeout is killed
    start_timeout: float = 120.0  # seconds for a warm interpreter to come up
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))

    @property
    def n_workers(self) -> int:
        return self.workers or len(os.sched_getaffinity(0)) or 1


# A cell's timeout in seconds, wherever one comes in (records, flags, the server): no cell can
# start within less than a millisecond, and from 1e9 up the interval timer overflows.
MIN_TIMEOUT, MAX_TIMEOUT = 0.001, 1e9


def timeout_problem(value: object) -> str | None:
    """Why ``value`` is not a cell timeout (None when it is one; None itself means the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number of seconds, got {type(value).__name__}"
    if not MIN_TIMEOUT <= value < MAX_TIMEOUT:  # also refuses NaN and infinity
        return f"must be at least {MIN_TIMEOUT:g} and below {MAX_TIMEOUT:g} seconds, got {value!r}"
    return None
