"""Worker: one nsjail holding one warm interpreter (the zygote, zygote.py), and the host's end of
its control socket (SOCK_SEQPACKET, JSON messages): fork and kill requests out, ``ready`` and
``exit`` reports in. It forks sessions; it runs no cells (session.py does).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

import orjson

from thor_cli.errors import SandboxError
from thor_cli.log import log
from thor_cli.sandbox.jail import UIDS_PER_WORKER, worker_command

if TYPE_CHECKING:
    from thor_cli.sandbox.pool import SandboxPool
    from thor_cli.sandbox.session import Session

_SEND_TIMEOUT = 30.0  # a zygote that takes no control message for this long is stuck, not busy


class Worker:
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
