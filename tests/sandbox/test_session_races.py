"""Review of the callback-driven Session (pool.py), CellSlots' request/withdraw/release (slots.py),
the batched input reader (runner.py) and the zygote's per-session re-seeding (zygote.py).

Each test builds what it needs (mostly a one-slot pool, so one held slot is the whole pool) and
bounds every wait: a leaked slot or a lost wake-up shows up as a failure, never as a hung suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from thor_cli.records.schema import ExecResult
from thor_cli.sandbox import SandboxConfig, SandboxPool
from thor_cli.sandbox.runner import _records_from_thread

ONE: dict[str, Any] = dict(workers=1, memory_mb=768, timeout=30.0, max_output=2000)
PIN: dict[str, Any] = {**ONE, "workers": len(os.sched_getaffinity(0))}  # pinning needs a slot per core
LOOPS = ["asyncio", "uvloop"]
# keeps the only slot while another cell queues (2 s: room for a loaded CI machine to queue it)
HOLD = "import time\ntime.sleep(2)\nprint('held')"


def _on(loop: str, main: Coroutine[Any, Any, Any]) -> Any:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def _held(p: Any) -> None:
    """Returns once a cell holds the pool's slot (on a loaded machine that can take a while)."""
    for _ in range(1000):
        if p._slots._held:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no cell took the slot")


async def _queued(s: Any, code: str) -> asyncio.Task[ExecResult]:
    """s.run(code) as a task, returned once its request waits in the slot queue."""
    task = asyncio.ensure_future(s.run(code))
    for _ in range(1000):
        await asyncio.sleep(0.005)
        if s.pool._slots._waiting:
            return task
    raise AssertionError("the cell never queued for a slot")


async def _pool_still_serves(p: SandboxPool) -> ExecResult:
    """A fresh session's cell, bounded: a slot leaked for good makes this a TimeoutError."""
    async with await p.session() as s:
        try:
            return await asyncio.wait_for(s.run("print('next')"), 5)
        except TimeoutError:
            return ExecResult("sandbox_error", error="HUNG: no slot came back within 5 s")


def _assert_slots_all_back(p: SandboxPool) -> None:
    slots = p._slots
    assert (slots.free, slots._held, slots._waiting) == (p.cfg.n_workers, {}, 0), (slots.free, slots._held)
    assert all(n == 0 for n in p._cells_on.values()), p._cells_on


# ------------------------------------------------------------------ a stale ticket in the slot queue
@pytest.mark.parametrize("loop", LOOPS)
def test_closing_a_session_whose_cell_waits_for_a_slot_leaks_no_slot(loop: str) -> None:
    """close() (thor exec serve's DELETE, e.g. after a client timeout) while the session's cell waits
    for a slot: that run ends, but its ticket stayed queued; served later, _dispatch found the
    session ended and its _on_frame(None) found no waiter, so the slot was never given back."""

    async def go() -> tuple[ExecResult, ExecResult, ExecResult]:
        async with SandboxPool(SandboxConfig(**ONE)) as p:
            a, b, waiting, holder = await _behind_a_holder(p, "x = 1", "print(x)")
            await a.close()
            ra = await asyncio.wait_for(waiting, 10)
            rb = await asyncio.wait_for(holder, 10)
            nxt = await _pool_still_serves(p)  # was: hung for ever (workers=1: the pool's only slot)
            await b.close()
            return ra, rb, nxt

    ra, rb, nxt = _on(loop, go())
    assert ra.status == "killed" and rb.stdout == "held\n", (ra, rb)
    assert nxt.status == "ok" and nxt.stdout == "next\n", nxt


async def _behind_a_holder(p: SandboxPool, first: str, then: str) -> tuple[Any, Any, Any, Any]:
    """(a, b, a's queued run, b's holding run): session a runs ``first``, then its ``then`` queues
    while b holds the only slot."""
    a, b = await p.session(), await p.session()
    await a.run(first)
    holder = asyncio.ensure_future(b.run(HOLD))
    await _held(p)
    return a, b, await _queued(a, then), holder


async def _queued_after(first: str, then: str) -> tuple[ExecResult, ExecResult]:
    """Session a runs ``first``; while b holds the only slot, a's ``then`` queues. Returns a's
    result for ``then`` and a fresh session's cell afterwards (does the pool still serve?)."""
    async with SandboxPool(SandboxConfig(**ONE)) as p:
        _, _, queued, holder = await _behind_a_holder(p, first, then)
        ra = await asyncio.wait_for(queued, 10)
        await asyncio.wait_for(holder, 10)
        return ra, await _pool_still_serves(p)


def test_a_session_that_ends_itself_while_its_cell_queues_leaks_no_slot() -> None:
    """A cell can do it on its own: a thread it leaves behind ends the interpreter while the
    session's next cell waits for a slot. One such cell hung the whole pool."""
    bomb = "import os, threading\nthreading.Timer(0.3, os._exit, (0,)).start()"

    ra, nxt = _on("asyncio", _queued_after(bomb, "print('a')"))  # nxt was: HUNG
    assert ra.status == "killed" and "exited with code 0" in ra.error, ra
    assert nxt.status == "ok", nxt


def test_a_frame_written_while_the_cell_queues_is_not_its_result() -> None:
    """A frame the session writes before its cell was even sent was taken as that cell's result
    (a cell chose the next cell's result), the cell's code was then sent anyway once a slot came,
    and its real reply, now unasked, left the slot held until the deadline (30 s here)."""
    forge = ("import os, stat, struct, json, threading, time\n"
             "def forge():\n    time.sleep(0.3)\n"
             "    body = json.dumps({'status': 'ok', 'stdout': 'forged\\n', 'stderr': '', 'error': None,\n"
             "                       'truncated': False, 'duration_ms': 1.0}).encode()\n"
             "    for fd in range(3, 64):\n        try:\n"
             "            if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
             "                os.write(fd, struct.pack('>I', len(body)) + body)\n                return\n"
             "        except OSError:\n            pass\n"
             "threading.Thread(target=forge, daemon=True).start()")

    ra, nxt = _on("asyncio", _queued_after(forge, "print('real')"))
    assert ra.status == "killed" and "forged" not in ra.stdout, ra  # was: ok, stdout "forged\n"
    assert nxt.status == "ok", nxt  # was: TimeoutError (the slot held until the 30 s deadline)


# ------------------------------------------------------------------ close() during the hello's peek
def _zygote_pid(p: SandboxPool) -> int:
    proc = p.workers[0].proc
    assert proc is not None
    if not p.machine.jailed:
        return proc.pid
    return int(open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()[0])


async def _close_during_hello(p: SandboxPool) -> asyncio.Task[ExecResult]:
    """A session closed while its first run waits for the hello (_peer_pid's peek when pinning):
    the zygote is stopped meanwhile, so the hello cannot come first."""
    zygote = _zygote_pid(p)
    os.kill(zygote, signal.SIGSTOP)
    try:
        s = await p.session()
        task = asyncio.ensure_future(s.run("print(1)"))
        await asyncio.sleep(0.3)  # the run reads (or peeks) for its hello now
        assert not task.done() and s._channel is None
        await s.close()
    finally:
        os.kill(zygote, signal.SIGCONT)
    return task


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning (and so the peek) needs two cores")
@pytest.mark.parametrize("loop", LOOPS)
def test_closing_a_session_during_its_hello_ends_its_run_at_once(loop: str) -> None:
    """_kill closed the raw socket under _peer_pid's add_reader: the peek never fired and the run
    waited for start_timeout (120 s by default). Before the change, close() ended it at once."""

    async def go() -> Any:
        async with SandboxPool(SandboxConfig(**PIN, start_timeout=30)) as p:
            assert p._cpus, "pinning is on"
            task = await _close_during_hello(p)
            done, _ = await asyncio.wait({task}, timeout=3)  # was: hung until start_timeout
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return "HUNG until start_timeout"
            return task.result()

    res = _on(loop, go())
    assert isinstance(res, ExecResult) and res.status == "sandbox_error", res


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning (and so the peek) needs two cores")
def test_a_session_closed_during_its_hello_does_not_break_the_next_session() -> None:
    """After that start_timeout, _peer_pid's finally did remove_reader(sock.fileno()) on the closed
    socket (-1: ValueError), leaving the selector's entry for the old fd. The next session's socket
    gets that fd number, its add_reader only rewrote the stale entry (no epoll registration), and
    an innocent session failed: 'did not start: no answer within start_timeout'."""

    async def go() -> tuple[Any, ExecResult]:
        async with SandboxPool(SandboxConfig(**PIN, start_timeout=2)) as p:
            assert p._cpus, "pinning is on"
            first = await asyncio.wait_for(await _close_during_hello(p), 10)
            async with await p.session() as s:
                return first, await asyncio.wait_for(s.run("print('next')"), 10)

    first, nxt = _on("asyncio", go())
    assert first.status == "sandbox_error", first
    assert nxt.status == "ok" and nxt.stdout == "next\n", nxt


# ------------------------------------------------------------------ the zygote's per-session state
def test_sympy_random_state_differs_between_sessions(pool, cells) -> None:
    """sympy (preloaded) keeps its own random.Random at sympy.core.random.rng; nothing re-seeds it
    per session, so every session forked from one warm interpreter drew the same randprime."""
    code = "import sympy\nprint(sympy.randprime(1, 10**12), sympy.core.random.rng.getrandbits(64))"
    got = [cells(code)[0] for _ in range(pool.cfg.n_workers + 1)]  # two at least from one worker
    assert all(r.status == "ok" for r in got), got
    assert len({r.stdout for r in got}) == len(got), [r.stdout for r in got]  # was: repeats


# ------------------------------------------------------------------ regressions that pass
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores")
@pytest.mark.parametrize("loop", LOOPS)
def test_every_way_a_cell_ends_gives_its_slot_and_core_back(loop: str) -> None:
    """Cells that finish, fail, time out, ignore the interrupt (the host's deadline), end the
    interpreter, and runs cancelled while executing or while queued, all at once on two slots:
    afterwards every slot is free and no core counts a cell (_cells_on never drifts)."""
    cells = ["print(1)", "1/0", "while True:\n    pass",
             "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass",
             "import os\nos._exit(3)", "import time\ntime.sleep(0.3)"]

    async def one(p: SandboxPool, i: int) -> str:
        async with await p.session() as s:
            code = cells[i % len(cells)]
            if i % 4 == 3:  # cancelled: some while executing, some while still queued
                try:
                    await asyncio.wait_for(s.run(code, timeout=0.2), 0.05 * (i % 3))
                except TimeoutError:
                    return "cancelled"
            return (await s.run(code, timeout=0.2)).status

    async def go() -> list[str]:
        cfg = SandboxConfig(**{**ONE, "workers": 2, "grace": 0.1})
        async with SandboxPool(cfg) as p:
            got = await asyncio.wait_for(asyncio.gather(*(one(p, i) for i in range(24))), 60)
            await asyncio.sleep(0.05)
            _assert_slots_all_back(p)
            assert (await _pool_still_serves(p)).status == "ok"
            return list(got)

    got = _on(loop, go())
    assert {"ok", "error", "timeout", "killed", "cancelled"} <= set(got), got


def test_input_reader_hands_on_an_error_in_the_middle_and_stops_its_thread() -> None:
    """A bad line in the middle of a big input: every record before it comes through (in batches,
    at most `high` held), then the error; an early stop (| head -n 1) ends the reader thread."""

    def records(n: int, bad_at: int | None) -> Iterator[int]:
        for i in range(n):
            if i == bad_at:
                raise ValueError(f"bad line {i}")
            yield i

    async def read_all(it: Iterator[int]) -> tuple[list[int], BaseException | None]:
        got: list[int] = []
        try:
            async for rec in _records_from_thread(it, high=8):  # type: ignore[arg-type]
                got.append(rec)
                if len(got) % 50 == 0:
                    await asyncio.sleep(0.001)  # a slow consumer: the thread waits for room
        except ValueError as e:
            return got, e
        return got, None

    async def stop_early() -> bool:
        before = set(threading.enumerate())
        agen: Any = _records_from_thread(records(10**6, None), high=8)  # type: ignore[arg-type]
        assert await agen.__anext__() == 0
        (reader,) = set(threading.enumerate()) - before
        await asyncio.sleep(0.05)  # the thread fills its 8 and waits
        await agen.aclose()
        for _ in range(100):
            if not reader.is_alive():
                return True
            await asyncio.sleep(0.01)
        return False

    got, err = asyncio.run(read_all(records(5000, 3001)))
    assert got == list(range(3001)) and str(err) == "bad line 3001"
    got, err = asyncio.run(read_all(records(3000, None)))
    assert got == list(range(3000)) and err is None
    assert asyncio.run(stop_early())


def test_a_zygote_that_dies_mid_cell_is_a_sandbox_error_and_frees_the_slot() -> None:
    """The warm interpreter killed while one of its sessions runs a cell and another's waits for
    the slot: both get sandbox_error (thor's failure, not the cell's), and a new worker serves."""

    async def go() -> tuple[ExecResult, ExecResult, ExecResult]:
        async with SandboxPool(SandboxConfig(**ONE)) as p:
            a, b = await p.session(), await p.session()
            await a.run("x = 1")
            await b.run("y = 1")
            running = asyncio.ensure_future(a.run(HOLD))
            await _held(p)
            waiting = await _queued(b, "print(y)")
            os.kill(_zygote_pid(p), signal.SIGKILL)
            ra, rb = await asyncio.wait_for(asyncio.gather(running, waiting), 10)
            nxt = await _pool_still_serves(p)
            _assert_slots_all_back(p)
            return ra, rb, nxt

    ra, rb, nxt = _on("asyncio", go())
    assert ra.status == "sandbox_error" and "worker ended" in ra.error, ra
    assert rb.status == "sandbox_error", rb
    assert nxt.status == "ok", nxt


def test_a_cell_sent_after_its_waiter_was_answered_still_gives_its_slot_back() -> None:
    """Its channel ends (waiter answered) and, in the same turn of the loop, the slot it queued for
    comes free: its cell is sent anyway, with nobody waiting. Its reply (or the channel's end)
    then found no waiter and kept the slot for good."""

    async def go() -> ExecResult:
        async with SandboxPool(SandboxConfig(**ONE)) as p:
            a, b, queued, holder = await _behind_a_holder(p, "x = 1", "print(x)")
            # the same turn of the loop, by hand: a's channel ends, then b's reply frees the slot
            a._on_frame(None)
            b._on_frame(b'{"status": "ok", "stdout": "", "stderr": "", "error": null, "duration_ms": 1, "truncated": false}')
            await asyncio.gather(queued, holder, return_exceptions=True)
            return await _pool_still_serves(p)  # was: HUNG (a's slot never came back)

    nxt = _on("asyncio", go())
    assert nxt.status == "ok" and nxt.stdout == "next\n", nxt
