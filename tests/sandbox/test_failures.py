"""thor's own failures (a dead or stuck zygote, a session that never starts) never escape as raw
OSErrors and never pass for the cell's doing: SandboxError from ``session()``, ``sandbox_error``
from ``run()``; a failed fork gives its session slot back; the control channel never blocks the loop."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import select
import signal
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from thor_cli.errors import SandboxError
from thor_cli.sandbox import SandboxConfig, SandboxPool
from thor_cli.sandbox.worker import Worker


def _detached_worker() -> tuple[Worker, socket.socket]:
    """A Worker whose control socket is one end of a pair we hold the other end of (no jail)."""
    w = Worker(SimpleNamespace(cfg=SandboxConfig(), closing=True, _cpus=[]), 0)  # type: ignore[arg-type]
    ours, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    zygote.setblocking(False)
    w.ctrl, w.alive = ours, True
    return w, zygote


def test_send_waits_for_room_without_blocking_the_loop() -> None:
    async def go() -> None:
        w, zygote = _detached_worker()
        filled = 0
        while True:  # a zygote far behind: its queue is full
            try:
                socket.send_fds(w.ctrl, [b"x" * 1000], [])  # type: ignore[arg-type]
                filled += 1
            except BlockingIOError:
                break
        ticks = 0
        send = asyncio.ensure_future(w._send({"op": "kill", "sid": 7}))
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1  # the loop runs while the send waits
        assert ticks == 5 and not send.done()
        for _ in range(filled):
            zygote.recv(65536)  # the zygote catches up
        await asyncio.wait_for(send, 5)
        assert zygote.recv(65536) == b'{"op":"kill","sid":7}'
        w.kill(8)  # kill never raises and never blocks
        assert zygote.recv(65536) == b'{"op":"kill","sid":8}'
        await w.stop()
        zygote.close()

    asyncio.run(go())


def test_a_dead_zygote_is_a_sandbox_error() -> None:
    async def go() -> None:
        w, zygote = _detached_worker()
        zygote.close()
        sess = SimpleNamespace(sid=1, uid=1)
        with pytest.raises(SandboxError, match="worker 0 has ended.*; retry"):
            await w.fork(sess)  # type: ignore[arg-type]
        assert not w.alive and not w.sessions
        w.kill(1)  # no raise
        with pytest.raises(SandboxError, match="has ended"):
            await w.fork(sess)  # type: ignore[arg-type]
        await w.stop()

    asyncio.run(go())


def test_a_failed_fork_gives_its_slot_back(pool, run, monkeypatch) -> None:
    def broken_fork(sess: Any) -> socket.socket:  # raises when called, as a stuck zygote's fork does
        raise SandboxError("sandbox worker took no request", "restart thor")

    async def go() -> None:
        free = [len(w.free_uids) for w in pool.workers]
        for w in pool.workers:
            monkeypatch.setattr(w, "fork", broken_fork)
        for _ in range(3):
            with pytest.raises(SandboxError, match="took no request"):
                await pool.session()
        monkeypatch.undo()
        assert [len(w.free_uids) for w in pool.workers] == free
        async with await pool.session() as s:
            assert (await s.run("print(1)")).stdout == "1\n"

    run(go())


def test_a_session_that_does_not_start_is_a_sandbox_error(pool, run) -> None:
    async def go() -> Any:
        cfg = pool.cfg
        pool.cfg = dataclasses.replace(cfg, start_timeout=0.2)
        try:
            async with await pool.session() as s:
                s._on_frame = lambda frame: None  # type: ignore[method-assign]  # its hello never comes
                return await s.run("print(1)", timeout=30)
        finally:
            pool.cfg = cfg

    res = run(go())
    assert res.status == "sandbox_error", res
    assert "did not start" in res.error and "0.2 s" in res.error and "30 s" not in res.error


@pytest.mark.slow
def test_a_zygote_that_died_unnoticed_is_replaced_on_the_next_session() -> None:
    async def go() -> tuple[Any, Any]:
        async with SandboxPool(SandboxConfig(workers=1, memory_mb=768, timeout=5.0)) as p:
            async with await p.session() as s:
                before = await s.run("x = 1")
            w = p.workers[0]
            assert w.proc is not None and w.ctrl is not None
            os.killpg(w.proc.pid, signal.SIGKILL)
            poll = select.poll()  # wait without letting the loop run: the pool has not noticed yet
            poll.register(w.ctrl.fileno(), select.POLLHUP)
            assert poll.poll(10_000)
            async with await p.session() as s:  # was: BrokenPipeError
                after = await s.run("print(2)")
            assert p.workers[0] is not w and len(p.workers[0].free_uids) == len(w.free_uids)
            return before, after

    before, after = asyncio.run(go())
    assert before.status == "ok" and after.status == "ok" and after.stdout == "2\n"


def test_server_passes_a_sandbox_error_on_to_its_client(tmp_path) -> None:
    from aiohttp import web

    from thor_cli.sandbox.client import RemoteSandbox
    from thor_cli.sandbox.server import make_app

    async def session() -> Any:
        raise SandboxError("sandbox worker 0 has ended", "retry: a new worker starts on demand")

    async def close() -> None:
        pass

    async def go() -> None:
        runner = web.AppRunner(make_app(SimpleNamespace(session=session, close=close, workers=[], off=[])))
        await runner.setup()
        await web.UnixSite(runner, str(tmp_path / "s.sock")).start()
        try:
            async with RemoteSandbox(f"unix:{tmp_path / 's.sock'}") as rs:
                with pytest.raises(SandboxError, match="HTTP 503.*worker 0 has ended; retry"):
                    await rs.session()
        finally:
            await runner.cleanup()

    asyncio.run(go())


def test_a_fork_that_fails_ends_only_that_session() -> None:
    """The worker's pids cgroup is full: the new session is a clear sandbox_error, the sessions
    already open keep their state, and a session opened after room is made works (was: the
    zygote died and took every session of its worker with it)."""
    cfg = SandboxConfig(workers=1, preload=(), worker_pids=3, timeout=5.0)  # zygote + 2 sessions

    async def go() -> tuple[list[Any], Any, Any, Any]:
        async with SandboxPool(cfg) as p:
            if "pids" not in p.machine.cgroups:
                pytest.skip("needs the pids cgroup (shell/setup-sandbox.sh as root)")
            a, b = await p.session(), await p.session()
            first = [await a.run("x = 'a'"), await b.run("x = 'b'")]
            c = await p.session()
            failed = await c.run("print(1)")
            kept = await a.run("print(x)")
            await b.close()
            await asyncio.sleep(0.2)  # b's process is reaped: room for one more
            async with await p.session() as d:
                later = await d.run("print(3)")
            await a.close()
            return first, failed, kept, later

    first, failed, kept, later = asyncio.run(go())
    assert [r.status for r in first] == ["ok", "ok"]
    assert failed.status == "sandbox_error" and "could not create its process" in failed.error, failed
    assert "Resource temporarily unavailable" in failed.error and "worker_pids" in failed.error
    assert kept.status == "ok" and kept.stdout == "a\n"
    assert later.status == "ok" and later.stdout == "3\n"
