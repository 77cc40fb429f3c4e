"""SandboxPool and Session: warm jailed interpreters, a forked child per session, async cells.

    async with SandboxPool(SandboxConfig()) as pool:
        async with await pool.session() as sess:
            res = await sess.run("x = 1\\nprint(x)")   # ExecResult(status="ok", stdout="1\\n", ...)

One asyncio event loop drives everything: each session's socket is read with asyncio streams, so
hundreds of sessions can be used from as many coroutines at once. At most ``workers`` cells
execute at the same time (slots.CellSlots), so a cell's wall-clock timeout measures its own run,
not its wait for a core.
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


class Session:
    """One Python interpreter whose state persists across cells. Run cells one at a time
    (concurrent ``run`` calls on one session queue up in order)."""

    def __init__(self, pool: SandboxPool, worker: _Worker, uid_index: int) -> None:
        """Made by :meth:`SandboxPool.session` (which also forks its process); not by hand."""
        self.pool, self.worker, self.uid_index = pool, worker, uid_index
        self.sid = next(_sids)
        self.uid = uid_index if pool.machine.jailed else UID_BASE + worker.index * UIDS_PER_WORKER + uid_index
        self._lock = asyncio.Lock()
        self._ended: str | None = None  # why the session can run no more cells
        self._exit: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._hello = False
        self._reader = asyncio.StreamReader(limit=2**16)
        self._sock: socket.socket | None = None  # set by the pool once the zygote has forked it
        self._writer: asyncio.StreamWriter | None = None

    @property
    def alive(self) -> bool:
        return self._ended is None

    def _on_exit(self, code: int | None, sig: int | None, worker_died: bool = False, error: str | None = None) -> None:
        if error:  # the zygote could not make this session's process
            why = (f"the sandbox could not create its process ({error}); the worker's process or memory "
                   "limit may be reached: close sessions, or raise worker_pids / worker_memory_mb")
        else:
            why = "its sandbox worker ended" if worker_died else _describe_exit(code, sig)
        if not self._exit.done():
            self._exit.set_result(why)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        transport, protocol = await loop.connect_accepted_socket(
            lambda: asyncio.StreamReaderProtocol(self._reader), sock=self._sock)
        self._writer = asyncio.StreamWriter(transport, protocol, self._reader, loop)

    async def _read_frame(self, max_bytes: int) -> dict[str, Any] | None:
        try:
            head = await self._reader.readexactly(4)
            (n,) = _HEAD.unpack(head)
            if n > max_bytes:
                raise ValueError(f"a reply of {n} bytes")
            return orjson.loads(await self._reader.readexactly(n))
        except asyncio.IncompleteReadError:
            return None

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
        if self._writer is not None:
            self._writer.close()
        elif self._sock is not None:  # never connected: the raw socket is still ours
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
            slots = self.pool._slots
            token = await slots.acquire(self)
            try:
                return await self._run(code, self.pool.cfg.timeout if timeout is None else timeout)
            except asyncio.CancelledError:  # the reply would come later and answer the next cell
                self._kill("a run was cancelled before its result came")
                raise
            finally:
                slots.release(self, token)

    async def _start(self) -> ExecResult | None:
        """Connect and read the session's hello; an ExecResult when it did not start."""
        cfg = self.pool.cfg
        try:
            if self._writer is None:
                await self._connect()
            hello = await asyncio.wait_for(self._read_frame(1 << 16), cfg.start_timeout)
        except TimeoutError:  # not the cell's timeout: the cell has not been sent yet
            why = f"no answer within start_timeout={cfg.start_timeout:g} s"
            self._kill(f"the session did not start: {why}")
            return ExecResult("sandbox_error", error=f"SandboxError: the session did not start: {why}; "
                              "the machine may be overloaded: use fewer sessions at once or raise start_timeout")
        except (ConnectionError, OSError, ValueError, orjson.JSONDecodeError) as e:
            log.debug("session %d: %s", self.sid, e)
            hello = None
        if hello is None or not hello.get("hello"):
            why = (hello or {}).get("setup_error") or await self._why_ended()
            self._kill(f"the session did not start: {why}")
            return ExecResult("sandbox_error", error=f"SandboxError: the session did not start: {why}")
        self._hello = True
        return None

    async def _run(self, code: str, timeout: float) -> ExecResult:
        cfg = self.pool.cfg
        max_bytes = 16 * cfg.max_output + (1 << 16)
        t0 = time.perf_counter()
        try:
            assert self._writer is not None
            deadline = timeout + cfg.grace if timeout > 0 else None
            async with asyncio.timeout(deadline):  # no extra task per cell, unlike wait_for
                self._writer.write(_frame({"code": code, "timeout": timeout, "max_output": cfg.max_output}))
                await self._writer.drain()  # in the deadline: a session that reads no more is stuck
                rep = await self._read_frame(max_bytes)
        except TimeoutError:
            self._kill(f"a cell ran past its {timeout:g} s timeout and was killed")
            return ExecResult("timeout", error=f"TimeoutError: the cell ran past its {timeout:g} s limit "
                              "and ignored the interrupt; the session was killed",
                              duration_ms=(time.perf_counter() - t0) * 1000)
        except (ConnectionError, OSError) as e:
            rep = None
            log.debug("session %d: %s", self.sid, e)
        except (ValueError, orjson.JSONDecodeError) as e:
            self._kill("it broke the reply protocol")
            return ExecResult("killed", error=f"ProtocolError: the cell wrote to thor's channel ({e}); session killed",
                              duration_ms=(time.perf_counter() - t0) * 1000)
        ms = (time.perf_counter() - t0) * 1000
        if rep is None:
            why = await self._why_ended()
            self._kill(f"its interpreter {why}")
            status: ExecStatus = "sandbox_error" if why == "its sandbox worker ended" else "killed"
            return ExecResult(status, error=f"SessionEnded: the interpreter {why}", duration_ms=ms)
        try:
            res = ExecResult(status=rep["status"], stdout=str(rep["stdout"]), stderr=str(rep["stderr"]),
                             error=rep["error"], duration_ms=float(rep["duration_ms"]),
                             truncated=bool(rep["truncated"]))
            if res.status not in _CELL_STATUSES or not (res.error is None or isinstance(res.error, str)):
                raise ValueError(res.status)
        except (KeyError, TypeError, ValueError):
            self._kill("it broke the reply protocol")
            return ExecResult("killed", error="ProtocolError: malformed reply (the cell wrote to thor's channel)",
                              duration_ms=ms)
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
        self._start_lock: asyncio.Lock | None = None
        self.closing = False
        self.off: list[str] = list(self.machine.off)
        self.hugepages_mb = 0  # of the warm interpreters' heaps, in huge pages (cfg.hugepages)

    @classmethod
    def connect(cls, url: str, **kw: Any) -> Any:
        """A client of ``thor exec serve`` with the same session API (see sandbox.server)."""
        from thor_cli.sandbox.server import RemoteSandbox

        return RemoteSandbox(url, **kw)

    async def start(self) -> SandboxPool:
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
        if not self.workers:
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
        for w in self.workers:
            for s in list(w.sessions.values()):
                await s.close()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
