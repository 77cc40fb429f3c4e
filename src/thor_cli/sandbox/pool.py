"""SandboxPool and Session: warm jailed interpreters, a forked child per session, async cells.

    async with SandboxPool(SandboxConfig()) as pool:
        async with await pool.session() as sess:
            res = await sess.run("x = 1\\nprint(x)")   # ExecResult(status="ok", stdout="1\\n", ...)

One event loop drives everything (asyncio's or uvloop's): each session's socket is read by a
Protocol that cuts it into frames, so hundreds of sessions can be used from as many coroutines at
once. At most ``workers`` cells execute at the same time (slots.CellSlots), so a cell's wall-clock
timeout measures its own run, not its wait for a core: a cell's deadline is armed when its request
is sent, and the reply's callback hands its slot on. With ``pin_cells``, each executing cell runs
on a core no other cell runs on (``SandboxPool._place``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import signal
import socket
import struct
import time
from typing import Any

import orjson

from thor_cli.errors import SandboxError
from thor_cli.log import log
from thor_cli.records.schema import EXEC_STATUSES, ExecResult, ExecStatus
from thor_cli.sandbox.config import SandboxConfig
from thor_cli.sandbox.jail import UID_BASE, UIDS_PER_WORKER, Machine, probe, worker_command
from thor_cli.sandbox.slots import CellSlots

_HEAD = struct.Struct(">I")
_sids = itertools.count(1)
_SEND_TIMEOUT = 30.0  # a zygote that takes no control message for this long is stuck, not busy
# what a session may answer: sandbox_error is thor's word alone (a cell writing it to the channel
# would blame thor for its own doing, and a caller may retry or drop such a sample)
_CELL_STATUSES = frozenset(EXEC_STATUSES) - {"sandbox_error"}


def _frame(obj: dict[str, Any]) -> bytes:
    data = orjson.dumps(obj)
    return _HEAD.pack(len(data)) + data


def _describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" + (" (a crash)" if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT) else "")
    if code is not None:
        return f"exited with code {code} (os._exit or a crash)"
    return "ended"


class _Worker:
    """One nsjail with its zygote; forks sessions on request over a SOCK_SEQPACKET control socket."""

    def __init__(self, pool: SandboxPool, index: int) -> None:
        self.pool, self.index = pool, index
        self.proc: asyncio.subprocess.Process | None = None
        self.ctrl: socket.socket | None = None
        self.alive = False
        self.ready: asyncio.Future[dict[str, Any]] | None = None
        self.sessions: dict[int, Session] = {}
        self.free_uids: collections.deque[int] = collections.deque(range(1, UIDS_PER_WORKER))
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.tasks: list[asyncio.Task[None]] = []
        self._writable_fut: asyncio.Future[None] | None = None  # shared by senders waiting for room
        self._pending: set[asyncio.Task[None]] = set()  # kill messages waiting for room

    async def start(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent.setblocking(False)
        cmd = worker_command(self.pool.cfg, self.pool.machine, self.index, child.fileno())
        self.ready = loop.create_future()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=(child.fileno(),), start_new_session=True)
        except OSError as e:
            raise SandboxError(f"cannot start the sandbox worker ({e})", "check that nsjail runs here") from None
        finally:
            child.close()
        self.ctrl, self.alive = parent, True
        self.tasks = [asyncio.create_task(self._read_ctrl()), asyncio.create_task(self._read_stderr())]
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), self.pool.cfg.start_timeout)
        except (TimeoutError, SandboxError):
            await self.stop()
            tail = "\n".join(self.stderr_tail) or "(no output)"
            raise SandboxError(f"the sandbox worker did not start; its stderr:\n{tail}",
                               "run shell/setup-sandbox.sh as root, or see docs for running without root") from None

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(line)
            log.debug("sandbox worker %d: %s", self.index, line)

    async def _read_ctrl(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.ctrl is not None
        try:
            while True:
                data = await loop.sock_recv(self.ctrl, 65536)
                if not data:
                    break
                msg = orjson.loads(data)
                if msg["op"] == "exit":
                    sess = self.sessions.pop(msg["sid"], None)
                    if sess is not None:
                        self.free_uids.append(sess.uid_index)
                        sess._on_exit(msg.get("code"), msg.get("signal"), error=msg.get("error"))
                elif msg["op"] == "ready" and self.ready is not None and not self.ready.done():
                    self.ready.set_result(msg)
        except (OSError, ValueError, KeyError) as e:
            log.debug("sandbox worker %d: control socket: %s", self.index, e)
        self._died()

    def _died(self) -> None:
        if self.alive:
            self.alive = False
            if not self.pool.closing:
                log.warning("sandbox worker %d ended; its %d sessions are lost (a new worker starts on demand)",
                            self.index, len(self.sessions))
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(SandboxError("the sandbox worker ended while starting"))
        for sess in list(self.sessions.values()):
            sess._on_exit(None, None, worker_died=True)
        self.sessions.clear()

    def _gone(self, e: OSError | None = None) -> SandboxError:
        if e is not None and self.alive:
            self._died()  # a send that fails with EPIPE/ECONNRESET is the first sign of a dead zygote
        why = f" ({e.strerror or e})" if e is not None else ""
        return SandboxError(f"sandbox worker {self.index} has ended{why}",
                            "retry: a new worker starts on demand; if workers keep ending, run with "
                            "--log-level debug to see their stderr")

    def _send_now(self, data: bytes, fds: list[int] | None) -> None:
        """One non-blocking send; BlockingIOError when the zygote is behind, SandboxError when it is gone."""
        if self.ctrl is None or not self.alive:
            raise self._gone()
        try:
            socket.send_fds(self.ctrl, [data], fds or [])
        except BlockingIOError:
            raise
        except OSError as e:
            raise self._gone(e) from None

    def _writable(self) -> asyncio.Future[None]:
        """Resolves when the control socket has room again (one writer callback for all waiters)."""
        if self._writable_fut is None or self._writable_fut.done():
            assert self.ctrl is not None
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            fd = self.ctrl.fileno()

            def ready() -> None:
                loop.remove_writer(fd)
                if not fut.done():
                    fut.set_result(None)

            loop.add_writer(fd, ready)
            self._writable_fut = fut
        return self._writable_fut

    async def _send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send one control message; while the zygote is behind on a burst of forks, wait for room
        without blocking the event loop (other sessions' cells go on meanwhile)."""
        data = orjson.dumps(msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SEND_TIMEOUT
        while True:
            try:
                self._send_now(data, fds)
                return
            except BlockingIOError:
                if loop.time() > deadline:
                    raise SandboxError(f"sandbox worker {self.index} took no request for {_SEND_TIMEOUT:g} s "
                                       "(its zygote is stuck)", "restart thor; if it recurs, run with "
                                       "--log-level debug and report its output") from None
            try:  # the short timeout also covers a poll that never reports room
                await asyncio.wait_for(asyncio.shield(self._writable()), 0.05)
            except TimeoutError:
                pass

    async def fork(self, sess: Session) -> socket.socket:
        """Ask the zygote for a new session process; the returned socket is the session's channel."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.pool._cpus:  # the session's hello then tells us its pid (SCM_CREDENTIALS), to pin it
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            await self._send({"op": "fork", "sid": sess.sid, "uid": sess.uid}, [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sessions[sess.sid] = sess
        return ours

    def kill(self, sid: int) -> None:
        if not self.alive:
            return
        data = orjson.dumps({"op": "kill", "sid": sid})
        try:
            self._send_now(data, None)
        except BlockingIOError:  # the zygote is behind: send it when there is room, never block here
            task = asyncio.get_running_loop().create_task(self._send_quietly({"op": "kill", "sid": sid}))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        except SandboxError:
            pass  # a dead worker took its sessions with it

    async def _send_quietly(self, msg: dict[str, Any]) -> None:
        try:
            await self._send(msg)
        except SandboxError as e:
            log.debug("sandbox worker %d: %s", self.index, e)

    async def stop(self) -> None:
        self.alive = False
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        if self._writable_fut is not None and not self._writable_fut.done() and self.ctrl is not None:
            asyncio.get_running_loop().remove_writer(self.ctrl.fileno())
            self._writable_fut.set_result(None)  # waiting senders wake and find the worker gone
        if self.ctrl is not None:
            self.ctrl.close()
        tasks = [*self.tasks, *self._pending]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_TIMED_OUT = object()  # what a session's waiter gets when the deadline came first


class _Channel(asyncio.Protocol):
    """The host's end of a session's socket: cuts the byte stream into frames and hands each to
    the session at once (no stream reader, no task per read)."""

    def __init__(self, sess: Session) -> None:
        self.sess = sess
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's are not asyncio.Transport subclasses)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not buf and len(data) >= 4 and _HEAD.unpack_from(data)[0] + 4 == len(data):
            self.sess._on_frame(data[4:])  # the usual case: one whole reply in one read
            return
        buf += data
        while len(buf) >= 4:
            (n,) = _HEAD.unpack_from(buf)
            if n > self.sess._max_bytes:
                self.sess._on_frame(ValueError(f"a reply of {n} bytes"))
                return
            if len(buf) < n + 4:
                return
            frame = bytes(buf[4:n + 4])
            del buf[:n + 4]
            self.sess._on_frame(frame)

    def eof_received(self) -> bool:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.sess._on_frame(None)


class Session:
    """One Python interpreter whose state persists across cells. Run cells one at a time
    (concurrent ``run`` calls on one session queue up in order).

    A cell holds one of the pool's slots exactly from its request's send to its reply's arrival:
    the channel's callback that reads a reply gives the slot on, and so sends the next waiting
    cell's request, before any coroutine is woken (slots.py)."""

    def __init__(self, pool: SandboxPool, worker: _Worker, uid_index: int) -> None:
        """Made by :meth:`SandboxPool.session` (which also forks its process); not by hand."""
        self.pool, self.worker, self.uid_index = pool, worker, uid_index
        self.sid = next(_sids)
        self.uid = uid_index if pool.machine.jailed else UID_BASE + worker.index * UIDS_PER_WORKER + uid_index
        self._lock = asyncio.Lock()
        self._ended: str | None = None  # why the session can run no more cells
        self._exit: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._hello = False
        self._sock: socket.socket | None = None  # set by the pool once the zygote has forked it
        self._channel: _Channel | None = None
        self._max_bytes = 16 * pool.cfg.max_output + (1 << 16)
        # the cell in flight: the future its frame goes to, its request, deadline timer, slot
        self._waiter: asyncio.Future[Any] | None = None
        self._request = b""
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._holding = False
        self._t0 = 0.0
        self._pid = 0  # the session's process as this host sees it (0: unknown, never pinned)
        self._cpu = -1  # the core it is pinned to
        self._placed = False  # its cell in flight counts in pool._cells_on[_cpu]
        self._peek: asyncio.Future[int] | None = None  # _peer_pid's, while it waits

    @property
    def alive(self) -> bool:
        return self._ended is None

    @property
    def busy(self) -> bool:
        """A run is under way (waiting for a slot, or its cell executing)."""
        return self._lock.locked()

    def _on_exit(self, code: int | None, sig: int | None, worker_died: bool = False, error: str | None = None) -> None:
        if error:  # the zygote could not make this session's process
            why = (f"the sandbox could not create its process ({error}); the worker's process or memory "
                   "limit may be reached: close sessions, or raise worker_pids / worker_memory_mb")
        else:
            why = "its sandbox worker ended" if worker_died else _describe_exit(code, sig)
        if not self._exit.done():
            self._exit.set_result(why)

    # ------------------------------------------------------------ channel callbacks
    def _on_frame(self, frame: Any) -> None:
        """A frame (bytes), a framing error (ValueError) or the end of the channel (None)."""
        fut, self._waiter = self._waiter, None
        if fut is not None and not fut.done():
            fut.set_result(frame)  # first, so that with a time slice its owner's next cell can keep the slot
        elif fut is not None and fut.cancelled():  # its run was cancelled in this turn of the loop
            self._kill("a run was cancelled before its result came")
        elif frame is not None:  # a frame nobody asked for: the cell wrote to thor's channel
            self._kill("it broke the reply protocol (a frame came unasked)")
        self._give_back_slot()  # always: a cell sent after its waiter was answered holds one too

    def _give_back_slot(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._holding:
            self._holding = False
            if self._placed:
                self._placed = False
                self.pool._cells_on[self._cpu] -= 1
            self.pool._slots.release(self)

    def _dispatch(self) -> None:
        """Called by the slots when this session's cell may run: send its request, arm its deadline."""
        self._holding = True
        self._t0 = time.perf_counter()
        ch = self._channel
        if self._ended is not None or ch is None or ch.transport is None or ch.transport.is_closing():
            asyncio.get_running_loop().call_soon(self._on_frame, None)  # never recurse into the slots
            return
        if self.pool._cpus and self._pid:  # before the request wakes it, so it wakes on that core
            self.pool._place(self)
        ch.transport.write(self._request)  # what the socket cannot take now is sent on by the loop
        if self._timeout > 0:  # within the deadline: a session that reads no more is stuck
            self._timer = asyncio.get_running_loop().call_later(self._timeout + self.pool.cfg.grace, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        fut, self._waiter = self._waiter, None
        self._kill(f"a cell ran past its {self._timeout:g} s timeout and was killed")
        if fut is not None and not fut.done():
            fut.set_result(_TIMED_OUT)
        self._give_back_slot()

    # ------------------------------------------------------------ the coroutine side
    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        channel = _Channel(self)
        await loop.connect_accepted_socket(lambda: channel, sock=self._sock)
        self._channel = channel

    async def _why_ended(self) -> str:
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), 1.0)
        except TimeoutError:
            return "ended"

    def _kill(self, why: str) -> None:
        """End the session's process (once; the first reason stays) and our end of its channel."""
        if self._ended is None:
            self._ended = why
            self.worker.kill(self.sid)
        if self._channel is not None:  # connected: the transport owns the socket
            if self._channel.transport is not None:
                self._channel.transport.abort()
        elif self._sock is not None:  # never connected: the raw socket is still ours
            if self._peek is not None:  # _peer_pid's reader: off the fd before it closes, and woken
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
                if not self._peek.done():
                    self._peek.set_result(0)
            self._sock.close()

    async def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell; never raises for anything the cell does (that is in the result)."""
        async with self._lock:
            if self._ended is not None:
                return ExecResult("killed", error=f"SessionClosed: this session can run no more cells: {self._ended}")
            if not self._hello:  # wait for the fork outside the cell slots: it holds no core meanwhile
                try:
                    failed = await self._start()
                except asyncio.CancelledError:
                    self._kill("a run was cancelled while the session started")  # its hello may be half read
                    raise
                if failed is not None:
                    return failed
            cfg = self.pool.cfg
            self._timeout = cfg.timeout if timeout is None else timeout
            self._request = _frame({"code": code, "timeout": self._timeout, "max_output": cfg.max_output})
            fut = self._waiter = asyncio.get_running_loop().create_future()
            self._t0 = time.perf_counter()  # (reset when it is sent; this for a cell answered before)
            ticket = self.pool._slots.request(self, self._dispatch)
            try:
                frame = await fut
            except asyncio.CancelledError:
                if self._waiter is fut:
                    self._waiter = None
                if ticket is not None and self.pool._slots.withdraw(ticket):
                    pass  # never sent: the session is as it was
                elif not fut.done() or fut.cancelled():  # its reply would come later, unasked
                    self._kill("a run was cancelled before its result came")
                    self._give_back_slot()
                raise
            if ticket is not None and self.pool._slots.withdraw(ticket):  # answered before it was sent
                frame = None if frame is None else ValueError("a frame came before the cell was sent")
            return await self._result(frame)

    async def _start(self) -> ExecResult | None:
        """Connect and read the session's hello; an ExecResult when it did not start."""
        cfg = self.pool.cfg
        hello: Any = None
        fut = self._waiter = asyncio.get_running_loop().create_future()  # before the channel can read
        try:
            frame = await asyncio.wait_for(self._await_hello(fut), cfg.start_timeout)
            if isinstance(frame, bytes):
                hello = orjson.loads(frame)
        except TimeoutError:  # not the cell's timeout: the cell has not been sent yet
            why = f"no answer within start_timeout={cfg.start_timeout:g} s"
            self._kill(f"the session did not start: {why}")
            return ExecResult("sandbox_error", error=f"SandboxError: the session did not start: {why}; "
                              "the machine may be overloaded: use fewer sessions at once or raise start_timeout")
        except (ConnectionError, OSError, ValueError) as e:
            log.debug("session %d: %s", self.sid, e)
        finally:
            if self._waiter is fut:
                self._waiter = None
        if not isinstance(hello, dict) or not hello.get("hello"):
            why = (hello if isinstance(hello, dict) else {}).get("setup_error") or await self._why_ended()
            self._kill(f"the session did not start: {why}")
            return ExecResult("sandbox_error", error=f"SandboxError: the session did not start: {why}")
        self._hello = True
        return None

    async def _await_hello(self, fut: asyncio.Future[Any]) -> Any:
        if self._channel is None:
            if self.pool._cpus:
                self._pid = await self._peer_pid()
                if self._ended is not None:
                    return None  # closed meanwhile: its socket is gone
            await self._connect()
        return await fut

    async def _peer_pid(self) -> int:
        """The session's pid in our pid namespace, from the credentials the kernel attaches to its
        hello (SO_PASSCRED, set before the fork); 0 when there are none. The hello is sent by the
        zygote's own code before any cell runs, so a cell cannot forge it."""
        loop = asyncio.get_running_loop()
        sock = self._sock
        assert sock is not None
        got: asyncio.Future[int] = loop.create_future()

        def readable() -> None:
            try:
                _, anc, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(12), socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                anc = []
            pid = 0
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
                    pid = struct.unpack_from("i", data)[0]
            if not got.done():
                got.set_result(pid)

        loop.add_reader(sock.fileno(), readable)
        self._peek = got
        try:
            return await got
        finally:
            self._peek = None
            if sock.fileno() >= 0:  # else _kill closed it, and took the reader off first
                loop.remove_reader(sock.fileno())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)

    async def _result(self, frame: Any) -> ExecResult:
        ms = (time.perf_counter() - self._t0) * 1000
        if frame is _TIMED_OUT:
            return ExecResult("timeout", error=f"TimeoutError: the cell ran past its {self._timeout:g} s limit "
                              "and ignored the interrupt; the session was killed", duration_ms=ms)
        if frame is None:
            why = await self._why_ended()
            self._kill(f"its interpreter {why}")
            status: ExecStatus = "sandbox_error" if why == "its sandbox worker ended" else "killed"
            return ExecResult(status, error=f"SessionEnded: the interpreter {why}", duration_ms=ms)
        try:
            if isinstance(frame, ValueError):
                raise frame
            rep = orjson.loads(frame)
            res = ExecResult(status=rep["status"], stdout=str(rep["stdout"]), stderr=str(rep["stderr"]),
                             error=rep["error"], duration_ms=float(rep["duration_ms"]),
                             truncated=bool(rep["truncated"]))
            if res.status not in _CELL_STATUSES or not (res.error is None or isinstance(res.error, str)):
                raise ValueError(res.status)
        except (KeyError, TypeError, ValueError) as e:  # orjson.JSONDecodeError is a ValueError
            self._kill("it broke the reply protocol")
            return ExecResult("killed", error=f"ProtocolError: malformed reply ({e}): the cell wrote to thor's "
                              "channel; session killed", duration_ms=ms)
        if res.status == "killed":
            self._kill(f"a cell ended its interpreter ({res.error})")
        return res

    async def close(self) -> None:
        """End the session and every process in it. Idempotent."""
        self._kill("it was closed")

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SandboxPool:
    """Warm jailed interpreters; :meth:`session` forks a fresh session from one of them."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.machine: Machine = probe(self.cfg)
        self.workers: list[_Worker] = []
        self._slots = CellSlots(self.cfg.n_workers, self.cfg.slice_s)
        # cores cells run on, one at a time each while there are more cores than slots (_place);
        # empty: the kernel places them
        # (only with a slot per core or more: with fewer slots the kernel may use the spare cores,
        # for the cells' own subprocesses too)
        cpus = sorted(os.sched_getaffinity(0))
        pin = self.cfg.pin_cells and 1 < len(cpus) <= self.cfg.n_workers
        self._cpus: list[int] = cpus if pin else []
        self._cells_on = dict.fromkeys(self._cpus, 0)  # core -> cells running there
        self._start_lock: asyncio.Lock | None = None
        self._starting: asyncio.Task[SandboxPool] | None = None  # the one start (start())
        self.closing = False
        self.off: list[str] = list(self.machine.off)
        self.hugepages_mb = 0  # of the warm interpreters' heaps, in huge pages (cfg.hugepages)

    @classmethod
    def connect(cls, url: str, **kw: Any) -> Any:
        """A client of ``thor exec serve`` with the same session API (see sandbox.server)."""
        from thor_cli.sandbox.server import RemoteSandbox

        return RemoteSandbox(url, **kw)

    async def start(self) -> SandboxPool:
        """Start the warm interpreters, once: callers that come while a start is under way (many
        first sessions at once, say) wait for that same start; a failed start is each one's error."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> SandboxPool:
        self.workers = [_Worker(self, i) for i in range(self.cfg.n_workers)]
        t0 = time.perf_counter()
        readies = await asyncio.gather(*(w.start() for w in self.workers), return_exceptions=True)
        errors = [r for r in readies if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]
        for r in readies:
            assert isinstance(r, dict)
            self.off += [o for o in r.get("off", []) if o not in self.off]
            self.hugepages_mb += int(r.get("hugepages_mb") or 0)
            if r.get("preload_failed"):
                log.warning("sandbox: could not preload %s in the jail", ", ".join(r["preload_failed"]))
        if self.off:
            log.warning("sandbox: protections OFF on this machine: %s", "; ".join(self.off))
        log.debug("sandbox: %d warm interpreters in %.2fs, %d MiB of their heaps in huge pages", len(self.workers),
                  time.perf_counter() - t0, self.hugepages_mb)
        return self

    async def session(self) -> Session:
        """A fresh session: a fork of a warm interpreter (never a start, never an import)."""
        if self._starting is None or not self._starting.done():
            await self.start()
        for last in (False, True):
            alive = [w for w in self.workers if w.alive and w.free_uids]
            if not alive:
                alive = [await self._replace_dead()]
            worker = min(alive, key=lambda w: len(w.sessions))
            sess = Session(self, worker, worker.free_uids.popleft())
            try:
                sess._sock = await worker.fork(sess)
                return sess
            except BaseException as e:
                worker.free_uids.appendleft(sess.uid_index)  # the slot was never used
                if last or worker.alive or not isinstance(e, SandboxError):
                    raise
            # the worker had died unnoticed (the fork found it gone): once more, on a fresh one
        raise AssertionError("unreachable")

    def _place(self, sess: Session) -> None:
        """Put the cell ``sess`` is about to run on a core no other cell runs on: its own core if
        that is free (no move), else the least used. Left to the kernel, a woken session was often
        queued behind the host on a busy core while the other core idled: 0.65 of 3.4 core-seconds
        idle in bench/exec_bench.py's mixed workload on 2 cores, 0.15 with this."""
        on = self._cells_on
        cpu = sess._cpu
        if on.get(cpu, 1 << 30) > min(on.values()):
            cpu = min(on, key=on.__getitem__)
            try:
                os.sched_setaffinity(sess._pid, {cpu})
            except ProcessLookupError:
                return  # it has just ended: its channel says so next
            except OSError as e:  # no permission (a session's uid of its own, and no CAP_SYS_NICE)
                log.debug("sandbox: cannot pin sessions to cores (%s); the kernel places them", e)
                self._cpus = []
                return
            sess._cpu = cpu
        on[cpu] += 1
        sess._placed = True

    async def _replace_dead(self) -> _Worker:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            for i, w in enumerate(self.workers):
                if w.alive and w.free_uids:
                    return w
                if not w.alive:
                    await w.stop()
                    self.workers[i] = nw = _Worker(self, w.index)
                    await nw.start()
                    return nw
        raise SandboxError(f"all {UIDS_PER_WORKER - 1} session slots of every worker are in use",
                           "close sessions you no longer need")

    async def close(self) -> None:
        self.closing = True
        starting = self._starting
        if starting is not None and not starting.done() and asyncio.current_task() is not starting:
            await asyncio.gather(starting, return_exceptions=True)  # then close what it started
        for w in self.workers:
            for s in list(w.sessions.values()):
                await s.close()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
