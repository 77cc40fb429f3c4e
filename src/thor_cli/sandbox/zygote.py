"""The warm interpreter that runs *inside* the jail: preloads libraries, then forks one child per
session. Standard library only; run as ``python3 -S -B -E -c <this file's source> <config json>``
(never imported by thor itself, so no thor code or path is visible in the jail).

Process tree inside one jail (one per pool worker)::

    zygote (uid 0 of the jail's user namespace, keeps capabilities; numpy/sympy imported, gc frozen)
      +-- session (pid 1 of its own pid namespace; own mount, ipc, uts [, net] namespaces (net:
      |            reused after its session ended, never two live sessions at once: NetPool);
      |            fresh /proc and a private tmpfs /tmp; own uid without capabilities; rlimits)
      |     +-- whatever its cells fork (killed after every cell)
      +-- session ...

Control socket (SOCK_SEQPACKET, JSON messages), host -> zygote:
``{"op": "fork", "sid": N, "uid": U}`` with the session's stream socket attached (SCM_RIGHTS);
``{"op": "kill", "sid": N}``. zygote -> host: ``{"op": "ready", "off": [...]}`` once warm;
``{"op": "exit", "sid": N, "code": C, "signal": S}`` when a session's process ends.

Session socket (SOCK_STREAM, 4-byte big-endian length + JSON): the session first sends
``{"hello": true}`` (or ``{"setup_error": "..."}``), then answers each
``{"code": str, "timeout": float, "max_output": int}`` with
``{"status", "stdout", "stderr", "error", "truncated", "duration_ms"}``.
"""

import _signal
import collections
import ctypes
import gc
import io
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x4000, 0x40000, 0x2, 0x4
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
# looked up once here, not in every session (CDLL.__getattr__ makes and caches a function object)
_prctl, _unshare, _setns, _mount, _syscall = _libc.prctl, _libc.unshare, _libc.setns, _libc.mount, _libc.syscall
_SIGKILL, _SIGXFSZ, _SIGALRM = int(signal.SIGKILL), int(signal.SIGXFSZ), int(signal.SIGALRM)
_DEFAULT_IN_SESSION = (int(signal.SIGCHLD), int(signal.SIGTERM), int(signal.SIGINT))
_X86_64 = os.uname().machine == "x86_64"
_HAS_SHM = os.path.isdir("/dev/shm")


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


# ---------------------------------------------------------------- output capture
class Capture(io.TextIOBase):
    """A text stream that keeps the first and last ``limit // 2`` characters of what is written."""

    def __init__(self, fd):
        self._fd = fd
        self.reset(10_000)

    def reset(self, limit):
        self.limit, self.head, self.tail, self.n_head, self.n_tail, self.total = limit, [], [], 0, 0, 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        self.total += n
        half = self.limit // 2
        if self.n_head < half:
            take = s[: half - self.n_head]
            self.head.append(take)
            self.n_head += len(take)
            s = s[len(take):]
        if s:
            self.tail.append(s)
            self.n_tail += len(s)
            if self.n_tail > 4 * half + 4096:  # trim now and then so memory stays bounded
                t = "".join(self.tail)[-half:]
                self.tail, self.n_tail = [t], len(t)
        return n

    def value(self):
        return "".join(self.head), "".join(self.tail)

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def writable(self):
        return True

    def flush(self):
        pass

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "replace"

    @property
    def buffer(self):
        """``sys.stdout.buffer.write(b"...")`` works as in a real interpreter (bytes decoded as UTF-8)."""
        return _BinaryCapture(self)


class _BinaryCapture(io.RawIOBase):
    def __init__(self, text):
        self._text = text

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        self._text.write(data.decode("utf-8", "replace"))
        return len(data)

    def fileno(self):
        return self._text.fileno()


def _read_fd_output(fd, limit):
    """What was written at the fd level (subprocesses, os.write): head and tail, then emptied."""
    try:  # the cell may have closed fd 1/2 or put another file there (read-only, a pipe): no crash
        size = os.fstat(fd).st_size
        if size == 0:
            return "", "", 0
        half = max(limit // 2, 1)
        head = os.pread(fd, min(size, 4 * half), 0)
        tail = os.pread(fd, min(size, 4 * half), max(size - 4 * half, 0)) if size > 4 * half else b""
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return "", "", 0
    return head.decode("utf-8", "replace"), tail.decode("utf-8", "replace"), size


def _join(cap, fdout, limit):
    """One text from the Python-level and fd-level captures, cut to head + marker + tail."""
    half = limit // 2
    ph, pt = cap.value()
    fh, ft, fsize = fdout
    py_whole = len(ph) + len(pt) == cap.total
    fd_whole = not ft
    if py_whole and fd_whole:
        text = ph + pt + fh
        if len(text) <= limit:
            return text, False
        return f"{text[:half]}\n... [{len(text) - 2 * half} characters truncated] ...\n{text[-half:]}", True
    prefix = ph + pt + fh if py_whole else ph
    if fsize == 0:
        suffix = pt
    elif fd_whole:
        suffix = (ph + pt if py_whole else pt) + fh
    else:
        suffix = ft
    dropped = max(cap.total + fsize - 2 * half, 1)
    return f"{prefix[:half]}\n... [{dropped} characters truncated] ...\n{suffix[-half:]}", True


# ---------------------------------------------------------------- running cells
class CellTimeout(BaseException):
    pass


_in_cell = [False]
_me = [0]  # pid of the session's interpreter


def _on_alarm(signum, frame):
    if _in_cell[0]:
        raise CellTimeout()


def _reap_cell_processes():
    """As pid 1 of the session's namespace: kill everything the cell left running, reap it."""
    try:  # orphans are re-parented to pid 1: no child means nothing else runs in the namespace
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.001)


def _format_exc(e, skip_frames=True):
    tb = e.__traceback__
    if skip_frames and tb is not None:
        tb = tb.tb_next  # drop the frame of run_cell itself
    lines = traceback.format_exception(type(e), e, tb)  # copes with a __str__ that raises
    try:  # str(e) runs the cell's own __str__, which may raise or return a non-str
        msg = f"{type(e).__name__}: {e}"
    except BaseException:  # noqa: BLE001
        msg = f"{type(e).__name__}: <exception str() failed>"
    return "".join(lines), msg.rstrip().rstrip(":")


def run_cell(req, env, out, err, pid1):
    code, timeout, limit = req["code"], float(req.get("timeout") or 0), int(req.get("max_output") or 10_000)
    out.reset(limit)
    err.reset(limit)
    sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO("")
    status, error = "ok", None
    t0 = time.perf_counter()
    try:
        compiled = compile(code, "<cell>", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as e:
        status = "memory" if isinstance(e, MemoryError) else "error"
        tb, error = _format_exc(e, skip_frames=False)
        err.write("".join(traceback.format_exception_only(type(e), e)))
        compiled = None
    if compiled is not None:
        if _signal.getsignal(_SIGALRM) is not _on_alarm:  # an earlier cell replaced or ignored it
            _signal.signal(_SIGALRM, _on_alarm)  # (_signal: signal.signal's enum conversions cost µs)
        t_run = time.perf_counter()
        try:
            try:  # the timer is armed in here: an interrupt that comes at once is still caught below
                _in_cell[0] = True
                if timeout > 0:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                exec(compiled, env)  # noqa: S102 -- running untrusted code is this process's job
            finally:  # a CellTimeout can come up to here (then it is caught below), never later
                _in_cell[0] = False
                ran = time.perf_counter() - t_run
        except CellTimeout:
            status, error = "timeout", f"TimeoutError: the cell ran past its {timeout:g} s limit"
        except BaseException as e:  # noqa: BLE001 -- every exception of the cell is data, SystemExit too:
            # sys.exit(3) in a cell is "SystemExit: 3" and the session lives on, as in a notebook kernel
            status = "memory" if isinstance(e, MemoryError) else "error"
            tb, error = _format_exc(e)
            try:  # (e.code may be the cell's own property, and raise)
                if isinstance(e, SystemExit) and e.code is None:
                    error = "SystemExit"  # sys.exit(), exit(): no code to show (str(e) would say "None")
            except BaseException:  # noqa: BLE001
                pass
            err.write(tb)
        finally:
            if os.getpid() != _me[0]:
                os._exit(0)  # a process the cell forked fell through to here: it must not answer
            signal.setitimer(signal.ITIMER_REAL, 0)
        if status in ("ok", "error") and 0 < timeout <= ran:
            # past its limit, yet it ended on its own: it caught the interrupt (a bare except) or its
            # own SIGALRM handler ran instead of ours -- still a timeout, never "ok"
            status, error = "timeout", f"TimeoutError: the cell ran past its {timeout:g} s limit (it caught the interrupt)"
    duration = (time.perf_counter() - t0) * 1000
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        pass
    sys.stdout, sys.stderr = out, err
    if pid1:
        _reap_cell_processes()
    res = {"status": status, "error": error, "duration_ms": duration, "truncated": False}
    for name, cap, fd in (("stdout", out, 1), ("stderr", err, 2)):
        text, cut = _join(cap, _read_fd_output(fd, limit), limit)
        res[name] = text
        res["truncated"] = res["truncated"] or cut
    return res


# ---------------------------------------------------------------- framing
# A session's channel is its socket's bare fd (os.read / os.write: no socket object to build in
# every session), and its replies go through one encoder made here, in the zygote. Whatever a
# session runs for the first time copies the pages it writes (refcounts, caches) from the zygote:
# the less Python between the fork and the first cell, the cheaper a session.
# The functions are bound here, so a cell that replaces os.read or json.loads breaks only itself.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_DECODE = json.loads
_HEAD = struct.Struct(">I")
_read, _write = os.read, os.write


def _frame(obj):
    text = _ENCODE(obj)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (print("\udcff")): not UTF-8, so not JSON to thor
        data = text.encode("utf-8", "replace")
    return _HEAD.pack(len(data)) + data


_HELLO = _frame({"hello": True})


def send_bytes(fd, data):
    view = memoryview(data)
    while view:
        view = view[_write(fd, view):]


def send_frame(fd, obj):
    send_bytes(fd, _frame(obj))


def recv_exact(fd, n):
    """``n`` bytes from ``fd``; None at the end of the stream."""
    chunk = _read(fd, n) if n else b""
    if len(chunk) == n:  # the usual case: all of it in one read
        return chunk
    if not chunk:
        return None
    buf = bytearray(chunk)
    while len(buf) < n:
        chunk = _read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(fd):
    head = recv_exact(fd, 4)
    if head is None:
        return None
    body = recv_exact(fd, _HEAD.unpack(head)[0])
    return None if body is None else _DECODE(body)


# ---------------------------------------------------------------- one session
def _setup_session(cfg, uid, own_net):
    """In the forked child: namespaces, mounts, limits, then drop to ``uid``. ``own_net``: the
    child still needs its own network namespace (else it was forked into one: NetPool). What this
    cannot do on a machine (no jail, no uid range, seccomp off x86_64) the host's probe reports."""
    _prctl(PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    os.setsid()
    if cfg["jailed"]:
        flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (CLONE_NEWNET if own_net else 0)
        _check(_unshare(flags), "unshare")
        _check(_mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        _check(_mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV, None), "mount /proc")
        opts = f"size={cfg['tmpfs_mb']}m,mode=0700,uid={uid},gid={uid}".encode()
        _check(_mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts), "mount /tmp")
        if _HAS_SHM:  # a private one per session, inside the same size budget
            _check(_mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, opts), "mount /dev/shm")
    lim = cfg["limits"]
    for name, value in (("RLIMIT_AS", lim["memory_mb"] << 20), ("RLIMIT_FSIZE", lim["file_mb"] << 20),
                        ("RLIMIT_CPU", lim["cpu_s"]), ("RLIMIT_NOFILE", lim["nofile"]),
                        ("RLIMIT_CORE", 0), ("RLIMIT_NPROC", lim["nproc"])):
        if name == "RLIMIT_NPROC" and not cfg["uid_range"]:
            continue  # RLIMIT_NPROC counts per uid: without a uid per session it would be shared
        resource.setrlimit(getattr(resource, name), (value, value))
    _signal.signal(_SIGXFSZ, _signal.SIG_IGN)  # a full file is an OSError, not a dead session
    if cfg["uid_range"]:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # non-zero uid: every capability is gone
    elif cfg["jailed"]:
        _drop_caps()
    os.chdir("/tmp")
    if cfg.get("seccomp") and _X86_64:
        install_seccomp()  # last: the set-up above needs mount and unshare


# ---------------------------------------------------------------- seccomp
# Syscalls a session never needs and that widen the kernel surface or escape its namespaces.
# x86_64 numbers: unshare setns mount umount2 pivot_root chroot ptrace bpf perf_event_open keyctl
# add_key request_key userfaultfd kexec_load kexec_file_load init_module finit_module
# delete_module open_by_handle_at name_to_handle_at fsopen fsconfig fsmount fspick open_tree
# move_mount mount_setattr swapon swapoff reboot acct syslog quotactl io_uring_setup; and memory no
# limit of the session counts (RLIMIT_AS sees none of it, no tmpfs size bounds it): memfd_create
# memfd_secret shmget msgget (a SysV segment or message queue keeps its memory after the process)
_DENY_X86_64 = (272, 308, 165, 166, 155, 161, 101, 321, 298, 250, 248, 249, 323, 246, 320, 175, 313,
                176, 304, 303, 430, 431, 432, 433, 428, 429, 442, 167, 168, 169, 163, 103, 179, 425,
                319, 447, 29, 68)
_CLONE, _CLONE3, _SOCKET = 56, 435, 41
# socket() families a session may use; the others answer EAFNOSUPPORT. AF_VSOCK above all: it is
# not confined by the network namespace and reaches the VM's host (Firecracker and the like).
_FAMILIES = (1, 2, 10, 16)  # AF_UNIX AF_INET AF_INET6 AF_NETLINK
_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_EPERM, _ENOSYS, _EAFNOSUPPORT = 1, 38, 97


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program():
    """A classic-BPF seccomp filter: deny the syscalls above (EPERM), clone() with any CLONE_NEW*
    flag (EPERM: no nested namespaces, in particular no nested user namespace), clone3 (ENOSYS, so
    libc falls back to clone), socket() of a family not in _FAMILIES (EAFNOSUPPORT), x32 syscalls,
    and any non-x86_64 ABI (kill). Everything else passes."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    errno = 0x00050000
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, kill),
            (ld, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, errno | _EPERM)]
    for nr in _DENY_X86_64:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, errno | _EPERM)]
    prog += [(jeq, 0, 1, _CLONE3), (ret, 0, 0, errno | _ENOSYS)]
    n = len(_FAMILIES)  # socket(): load its first argument, allow the families listed, refuse the rest
    prog += [(jeq, 0, n + 3, _SOCKET), (ld, 0, 0, 16)]
    prog += [(jeq, n - i, 0, fam) for i, fam in enumerate(_FAMILIES)]
    prog += [(ret, 0, 0, errno | _EAFNOSUPPORT), (ret, 0, 0, allow)]
    prog += [(jeq, 0, 3, _CLONE), (ld, 0, 0, 16), (jset, 0, 1, _NS_FLAGS), (ret, 0, 0, errno | _EPERM),
             (ret, 0, 0, allow)]
    return prog


_FPROG: list = []  # built once in the zygote; sessions inherit it (no ctypes work per session)


def _fprog():
    if not _FPROG:
        prog = seccomp_program()
        arr = (_SockFilter * len(prog))(*[_SockFilter(c, jt, jf, k) for c, jt, jf, k in prog])
        fprog = _SockFprog(len(prog), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
        _FPROG[:] = [arr, fprog, ctypes.byref(fprog)]
    return _FPROG[2]


def install_seccomp():
    """no_new_privs, then the filter, for this process and everything it forks (irrevocable)."""
    _check(_prctl(38, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _check(_prctl(22, 2, _fprog(), 0, 0), "prctl(PR_SET_SECCOMP)")


def _drop_caps():
    """capset(2) with empty sets (the session keeps the zygote's uid but no capability)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_syscall(126, header, data), "capset")  # 126 = capset on x86_64


def session_main(chan, cfg, uid, pid1, own_net):
    """A session's life: set-up, hello, then one reply per cell until the host closes ``chan``
    (the fd of the session's socket)."""
    try:
        _setup_session(cfg, uid, own_net)
    except BaseException as e:  # noqa: BLE001 -- report, never hang the host
        send_frame(chan, {"setup_error": f"{type(e).__name__}: {e}"})
        return
    _me[0] = os.getpid()
    env = {"__name__": "__main__", "__builtins__": __builtins__}
    out, err = Capture(1), Capture(2)
    send_bytes(chan, _HELLO)
    _signal.signal(_SIGALRM, _on_alarm)
    while True:
        req = recv_frame(chan)
        if req is None:
            return
        send_frame(chan, run_cell(req, env, out, err, pid1))


def _fd_setup():
    """fd 0 from /dev/null; fds 1 and 2 are memory files the session reads back after each cell."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd in (1, 2):
        m = os.memfd_create("out", 0)
        os.dup2(m, fd)
        os.close(m)


def _fork():
    """fork(2) without CPython's after-fork work. That work (re-creating the GIL and runtime locks,
    dropping other threads and interpreters, running every ``os.register_at_fork`` hook) is only
    needed when other threads exist, and it costs a session ~0.8 ms and ~230 copied pages. The
    zygote is single-threaded (checked at start: ``_RAW_FORK``); the one hook whose effect matters,
    re-seeding ``random``, is done by hand in the child (``_reseed``)."""
    if _RAW_FORK[0]:
        return _pyapi_fork()
    return os.fork()


_RAW_FORK = [False]
_pyapi_fork = ctypes.PyDLL(None, use_errno=True).fork  # PyDLL: the GIL stays held across the call
_pyapi_fork.restype = ctypes.c_int


def _reseed():
    """A fresh seed from the OS for every random generator the warm interpreter holds, as a new
    interpreter would draw at import; forked as they are, every session would draw the same."""
    mods = sys.modules
    if "random" in mods:  # what os.fork's after-fork hooks would have done for us
        mods["random"].seed()
    if _NP_STATE:  # numpy's global MT19937, written in place: a key from the OS, as seed(None) does
        _NP_STATE[0][:] = _MT_KEY0 + os.urandom(_MT_WORDS * 4 - 4) + _MT_POS  # (a view: no ctypes call)
    elif "numpy.random" in mods:  # 128 bits through init_by_array (np.asarray and friends: ~220
        mods["numpy.random"].seed(list(memoryview(os.urandom(16)).cast("I")))  # copied pages, 0.7 ms)
    if "sympy.core.random" in mods:  # sympy's own Random (randprime, random matrices...)
        mods["sympy.core.random"].rng.seed()


# numpy's legacy generator state (mt19937_state: uint32 key[624], int pos) and what seed(None)
# puts there: key[0] = 0x80000000 (never all zero), pos = 624 (the next draw regenerates)
_MT_WORDS = 624
_MT_KEY0 = struct.pack("<I", 0x80000000)
_MT_POS = struct.pack("<i", _MT_WORDS)
_NP_STATE: list = []  # [a byte view of numpy's global MT19937 state] when it can be written in place


def _find_numpy_state():
    """Where numpy's global RandomState keeps its MT19937 state, checked against what numpy itself
    reports (key, pos, no cached Gaussian); [] when anything differs (then _reseed seeds through
    numpy, ~0.7 ms a session)."""
    try:
        rs = sys.modules["numpy.random"].mtrand._rand
        name, key, pos, has_gauss, _ = rs.get_state()
        addr = rs._bit_generator.ctypes.state_address
        raw = ctypes.string_at(addr, _MT_WORDS * 4 + 4)
        if name != "MT19937" or has_gauss or len(key) != _MT_WORDS or raw != key.astype("<u4").tobytes() + struct.pack("<i", pos):
            return []
        return [memoryview((ctypes.c_ubyte * (_MT_WORDS * 4 + 4)).from_address(addr)).cast("B")]
    except Exception:  # noqa: BLE001 -- no numpy, another layout: the slow way
        return []


class NetPool:
    """Network namespaces for sessions, reused. A new one costs a session ~0.5 ms, and the kernel
    ~0.35 ms more to tear down (cleanup_net waits for RCU), an eighth of a new session's CPU.

    A namespace comes back when its session's process is reaped: that process was pid 1 of the
    session's pid namespace, so nothing of the session runs any more (only with per-session pid
    namespaces is a NetPool made). It goes to the next session only if no socket is left in it
    (/proc/self/net/sockstat), so nothing of one session -- a socket kept alive past its process,
    in flight in a unix socket, say -- can reach another; else it is dropped for a new one.
    Sessions hold no capability in it: its interfaces (lo, down), routes and sysctls stay as made.
    The child is forked while the zygote is inside the namespace and inherits it."""

    KEEP = 64  # namespaces kept for reuse; more are dropped (the kernel frees them)

    def __init__(self):
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.free = collections.deque()
        self.used = {}  # session pid -> its namespace's fd
        _sockets_here()  # OSError where it cannot be read: then no pool

    def enter(self):
        """Enter a namespace no session uses (the next fork's child inherits it); its fd."""
        while self.free:
            nfd = self.free.popleft()  # the longest free: sockets of its session freed by now
            try:
                _check(_setns(nfd, CLONE_NEWNET), "setns net")
                if _sockets_here() == 0:
                    return nfd
            except OSError:
                pass
            os.close(nfd)
        _check(_unshare(CLONE_NEWNET), "unshare net")
        return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def leave(self):
        _check(_setns(self.home, CLONE_NEWNET), "setns net")

    def release(self, nfd):
        if len(self.free) < self.KEEP:
            self.free.append(nfd)
        else:
            os.close(nfd)

    def reaped(self, pid):
        nfd = self.used.pop(pid, None)
        if nfd is not None:
            self.release(nfd)


def _sockets_here():
    """Sockets open in the zygote's current network namespace (sockstat's "sockets: used N": the
    count is per namespace and leaves out the kernel's own); -1 when the line is not there."""
    f = os.open("/proc/self/net/sockstat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        head, _, rest = os.read(f, 64).partition(b"sockets: used ")
    finally:
        os.close(f)
    n = rest.split(b"\n", 1)[0]
    return int(n) if not head and n.isdigit() else -1


def fork_session(cfg, uid, fd, pidns_fd, net):
    """The session's pid, or OSError when it cannot be made (the worker's process or memory
    limit is reached, say); the zygote itself carries on either way. ``net``: a NetPool or None."""
    nfd = None
    try:
        if pidns_fd is not None:
            # a new pid namespace for the next child only: reset to our own, then unshare a new one
            _check(_setns(pidns_fd, CLONE_NEWPID), "setns pid")
            _check(_unshare(CLONE_NEWPID), "unshare pid")
        if net is not None:
            nfd = net.enter()
        pid = _fork()
        if pid < 0:
            _check(pid, "fork")
    except BaseException:
        os.close(fd)
        if net is not None:
            net.leave()
            if nfd is not None:
                net.release(nfd)
        raise
    if pid != 0:
        os.close(fd)
        if net is not None:
            net.used[pid] = nfd
            net.leave()
        return pid
    code = 0
    try:
        _reseed()
        _signal.set_wakeup_fd(-1)
        for s in _DEFAULT_IN_SESSION:
            _signal.signal(s, _signal.SIG_DFL)
        os.set_blocking(fd, True)
        _fd_setup()
        os.closerange(3, fd)  # every fd of the zygote but the session's socket (close_range(2))
        os.closerange(fd + 1, 1 << 20)
        gc.enable()
        session_main(fd, cfg, uid, pidns_fd is not None, cfg["session_net"] and net is None)
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


# ---------------------------------------------------------------- the zygote
# What model-written cells import often and would otherwise import in every session: stdlib
# modules the preloads do not pull in, and the numpy submodules numpy loads only on first use
# (numpy.random alone cost a session 21 ms). Their generators are re-seeded per session (_reseed).
_WARM_ALSO = ("statistics", "heapq", "numpy.random", "numpy.fft", "numpy.polynomial")


def preload(names):
    failed = []
    for name in names:
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001
            failed.append(name)
    for name in _WARM_ALSO:
        if name.partition(".")[0] in sys.modules or "." not in name:
            try:
                __import__(name)
            except BaseException:  # noqa: BLE001 -- a convenience, never a failure
                pass
    if "sympy" in sys.modules:  # warm sympy's caches once here, not in every session
        try:
            import sympy as sp

            x = sp.symbols("x")
            sp.sqrt(8), sp.Rational(1, 3) + 1, sp.solve(x**2 - 2, x), sp.factorint(360)
            sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2), sp.integrate(x**2, x), sp.Matrix([[1, 2], [3, 4]]).det()
            sp.N(sp.pi, 20), sp.expand((x + 1) ** 3), sp.nsimplify(0.5), sp.isprime(97)
        except BaseException:  # noqa: BLE001
            pass
    if "numpy" in sys.modules:
        try:
            import numpy as np

            np.linalg.inv(np.eye(3) * 2.0), np.arange(10).sum()
        except BaseException:  # noqa: BLE001
            pass
    return failed


def collapse_hugepages():
    """Back the warm heap with transparent huge pages (MADV_COLLAPSE, Linux 6.1+): a fork then
    copies a page-table entry per 2 MiB instead of per 4 KiB, and a session's exit has as much less
    to unmap. Pages a session writes are still copied 4 KiB at a time. Returns MiB collapsed."""
    done = 0
    try:
        maps = open("/proc/self/maps").read().splitlines()
    except OSError:
        return 0
    for line in maps:
        f = line.split()
        if "w" not in f[1] or (len(f) > 5 and f[5] != "[heap]"):
            continue  # anonymous writable memory only: pymalloc arenas and the malloc heap
        lo, hi = (int(v, 16) for v in f[0].split("-"))
        lo, hi = (lo + (1 << 21) - 1) & ~((1 << 21) - 1), hi & ~((1 << 21) - 1)
        if hi <= lo:
            continue
        _libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 14)  # MADV_HUGEPAGE
        if _libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 25) == 0:  # MADV_COLLAPSE
            done += (hi - lo) >> 20
    return done


def immortalize():
    """Make every object of the warm heap immortal (PEP 683; CPython 3.12 and 3.13 with the GIL):
    its refcount is set to the value CPython gives its own immortal objects (None's), after which
    Py_INCREF and Py_DECREF leave it unwritten. Without this, each object a session merely uses --
    a function it calls, a constant it loads, a class it looks up -- has its refcount written, and
    the page it lives on copied: ~1,650 pages for a session's first sympy cell, ~720 with it.

    What it changes for a session: nothing of the warm heap is ever freed in it (a session is a
    short-lived fork; what it allocates itself is freed as usual), and ``sys.getrefcount`` of such
    an object is a large constant. Reached: every object the collector tracks, what they refer to,
    and the constants of code objects (which the collector does not traverse). Returns how many
    objects were made immortal; 0 where the interpreter has no immortal objects to copy."""
    if not (3, 12) <= sys.version_info[:2] <= (3, 13) or "t" in getattr(sys, "abiflags", ""):
        return 0  # before 3.12: no immortality; 3.14 changed the encoding; free-threaded: other fields
    refcnt = ctypes.c_ssize_t.from_address
    immortal = refcnt(id(None)).value
    if immortal != 0xFFFFFFFF:
        return 0  # not the encoding of 3.12/3.13 (a debug or patched build): leave refcounts alone
    code = type(immortalize.__code__)
    todo = gc.get_objects()  # before gc.freeze(): frozen objects are not listed
    seen = {id(o) for o in todo}
    n = 0
    while todo:
        o = todo.pop()
        kids = o.co_consts if type(o) is code else gc.get_referents(o)
        for k in kids:
            if id(k) not in seen:
                seen.add(id(k))
                todo.append(k)
        cell = refcnt(id(o))
        if cell.value != immortal:
            cell.value = immortal
            n += 1
    return n


def fill_free_blocks():
    """Use up the free blocks of pymalloc's partly used pools in the warm heap (freed temporaries
    of the imports and warm-ups, scattered over thousands of pages). Otherwise a session's new
    small objects go one into each of those pages, and each page is copied for it; once they are
    used up, its objects are packed into fresh pools. Measured on 3.12 with an immortal heap: a
    session's first sympy cell 5.6 -> 5.0 ms of CPU, 650 -> 550 copied pages. The blocks are never
    freed (about 6,000 of them, well under 1 MiB). Returns how many were taken; 0 where pymalloc's
    statistics cannot be read (another allocator, another format)."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return 0
    fd, saved = os.memfd_create("mallocstats"), os.dup(2)
    try:
        os.dup2(fd, 2)  # the statistics are printed by C on fd 2
        stats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, 0)
    with open(fd, "rb") as f:
        text = f.read().decode(errors="replace")
    rows = []  # (block size, free blocks) under "class size num pools blocks in use avail blocks"
    for line in text.split("avail blocks", 1)[-1].splitlines()[2:]:
        f = line.split()
        if len(f) != 5 or not all(v.isdigit() for v in f):
            break
        rows.append((int(f[1]), int(f[4])))
    # a prototype of its own: ctypes.pythonapi's shared function object stays as cells expect it
    malloc = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(("PyObject_Malloc", ctypes.pythonapi))
    n = 0
    for size, avail in rows:
        for _ in range(avail):
            malloc(size)
        n += avail
    return n


def _exit_builtins():
    """``exit()`` and ``quit()`` as ``site`` defines them (the zygote runs with -S, without site):
    they raise SystemExit, which a cell reports as its error."""
    import _sitebuiltins
    import builtins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


def main():
    cfg = json.loads(sys.argv[1])
    _exit_builtins()
    for p in cfg["sys_path"]:
        sys.path.append(p)
    ctrl = socket.socket(fileno=cfg["ctrl_fd"])
    ctrl.setblocking(True)
    off = []
    pidns_fd = None
    if cfg["jailed"]:
        try:
            pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
        except OSError:
            off.append("per-session pid namespace")
    net = None
    if cfg["jailed"] and cfg["session_net"] and pidns_fd is not None:
        try:
            net = NetPool()
        except OSError:  # each session then makes its own, as before
            net = None
    failed = preload(cfg["preload"])
    if cfg.get("seccomp"):
        _fprog()
    if "numpy.random" in sys.modules:
        _NP_STATE[:] = _find_numpy_state()
    _RAW_FORK[0] = cfg.get("raw_fork", True) and len(os.listdir("/proc/self/task")) == 1
    os.environ.clear()  # once, here: every session inherits exactly the configured environment
    os.environ.update(cfg["env"])
    gc.collect()
    immortal = immortalize() if cfg.get("immortal") else 0
    fill_free_blocks()
    gc.freeze()
    gc.disable()  # nothing here allocates cycles; sessions turn it back on
    huge = collapse_hugepages() if cfg.get("hugepages") else 0
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    ctrl.send(json.dumps({"op": "ready", "off": off, "preload_failed": failed, "hugepages_mb": huge,
                          "immortal": immortal}).encode())
    sel = selectors.DefaultSelector()
    sel.register(ctrl, selectors.EVENT_READ, "ctrl")
    sel.register(rfd, selectors.EVENT_READ, "sig")
    pids = {}  # pid -> sid
    sids = {}  # sid -> pid
    while True:
        for key, _ in sel.select():
            if key.data == "sig":
                os.read(rfd, 4096)
                while True:
                    try:
                        pid, st = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    if net is not None:
                        net.reaped(pid)
                    sid = pids.pop(pid, None)
                    if sid is not None:
                        sids.pop(sid, None)
                        msg = {"op": "exit", "sid": sid, "code": os.WEXITSTATUS(st) if os.WIFEXITED(st) else None,
                               "signal": os.WTERMSIG(st) if os.WIFSIGNALED(st) else None}
                        ctrl.send(json.dumps(msg).encode())
                continue
            msg, fds, _, _ = socket.recv_fds(ctrl, 65536, 4)
            if not msg:
                return  # the host went away: the jail ends with us
            req = json.loads(msg)
            if req["op"] == "fork":
                try:
                    pid = fork_session(cfg, req["uid"], fds[0], pidns_fd, net)
                    pids[pid], sids[req["sid"]] = req["sid"], pid
                except OSError as e:  # this session is not made; the others go on
                    ctrl.send(json.dumps({"op": "exit", "sid": req["sid"], "code": None, "signal": None,
                                          "error": str(e)}).encode())
            elif req["op"] == "kill":
                pid = sids.get(req["sid"])
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            for extra in fds[1:] if req["op"] == "fork" else fds:
                os.close(extra)


if __name__ == "__main__":
    main()
