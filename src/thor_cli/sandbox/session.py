"""Session: one forked interpreter whose state persists across cells, and _Channel, the host's end
of its socket (4-byte big-endian length + JSON frames; zygote.py has the other end).

One event loop drives everything (asyncio's or uvloop's): each session's socket is read by a
Protocol that cuts it into frames, so hundreds of sessions can be used from as many coroutines at
once. At most ``workers`` cells execute at the same time (slots.CellSlots), so a cell's wall-clock
timeout measures its own run, not its wait for a core: a cell's deadline is armed when its request
is sent, and the reply's callback hands its slot on.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import orjson

from thor_cli.log import log
from thor_cli.records.schema import EXEC_STATUSES, ExecResult, ExecStatus
from thor_cli.sandbox.jail import UID_BASE, UIDS_PER_WORKER

if TYPE_CHECKING:
    from thor_cli.sandbox.pool import SandboxPool
    from thor_cli.sandbox.worker import Worker

_HEAD = struct.Struct(">I")
_sids = itertools.count(1)
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

    def __init__(self, pool: SandboxPool, worker: Worker, uid_index: int) -> None:
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
