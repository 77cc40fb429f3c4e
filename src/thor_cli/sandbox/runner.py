"""``thor exec``'s engine: run a stream of cell records through a pool, record by record.

Records with the same ``session`` run in input order in one interpreter; a record without one
runs in a fresh session of its own; ``"end_session": true`` closes its session after its cell (a
later record with that name starts a new session). Records of different sessions run
concurrently. Output is in input order unless ``ordered=False``.

Resuming (``--resume``): a finished cell is not rerun, except that when a session still has
unfinished cells, its finished ones are replayed silently first so the session's state is right.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from thor_cli.errors import InputError, SandboxError
from thor_cli.log import log
from thor_cli.records.jsonl import InputRecord
from thor_cli.records.schema import ExecResult
from thor_cli.sandbox.base import Sandbox, SandboxSession
from thor_cli.sandbox.config import timeout_problem

_END = object()


@dataclass
class _SessionState:
    session: SandboxSession | None = None
    last: asyncio.Future[Any] | None = None  # the previous cell of this session
    replay: list[tuple[str, float | None]] = field(default_factory=list)
    broken: str | None = None  # why its session could not be made (its later cells get that error)


def parse_cell(rec: InputRecord) -> tuple[str, str | None, float | None, bool]:
    code = rec.optional("code", str, "")
    sess = rec.optional("session", (str, int))
    timeout = rec.optional("timeout", (int, float))
    if (why := timeout_problem(timeout)) is not None:
        raise InputError(why, path=rec.path, line=rec.line, field="timeout")
    end = rec.optional("end_session", bool, False)
    if rec.data.get("code") is None and not end:
        rec.require("code")  # raises: a cell record needs code (or is only an end_session marker)
    return code, None if sess is None else str(sess), None if timeout is None else float(timeout), end


async def _records_from_thread(records: Iterator[InputRecord], high: int = 1024) -> AsyncIterator[Any]:
    """Read the (blocking) input in a thread so running cells are never held up by stdin.

    Records cross to the event loop in batches: the thread appends to a buffer and wakes the loop
    only when the buffer was empty; the loop takes all there is at once. At most ``high`` records
    are read and not yet handed on; past that the thread sleeps until half of them are. (Handing
    records over one by one, each waiting for the loop, cost ~150 us of thread wake-ups a record.)"""
    loop = asyncio.get_running_loop()
    buf: collections.deque[Any] = collections.deque()
    cond = threading.Condition()  # guards buf, held and stop
    ready = asyncio.Event()
    held = 0  # records read and not yet handed on (in buf, or taken by the loop and not yielded)
    stop = False

    def put(item: Any) -> bool:
        nonlocal held
        with cond:
            while held >= high and not stop:
                cond.wait()
            if stop:
                return False
            wake = not buf  # else the loop was woken for what is there, and takes this too
            buf.append(item)
            held += 1
        if wake:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop is closed: nobody reads any more
                return False
        return True

    def pump() -> None:
        try:
            for rec in records:
                if not put(rec):
                    return
            item: Any = _END
        except BaseException as e:  # noqa: BLE001 -- handed to the event loop, raised there
            item = e
        put(item)

    t = threading.Thread(target=pump, daemon=True, name="thor-exec-input")
    t.start()
    try:
        while True:
            await ready.wait()
            with cond:
                items = list(buf)
                buf.clear()
                ready.clear()
            for item in items:
                with cond:
                    held -= 1
                    if held == high // 2:
                        cond.notify()  # room for a batch again
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
    finally:
        with cond:
            stop = True
            cond.notify()


async def run_records(pool: Sandbox, records: Iterator[InputRecord], emit: Callable[[dict[str, Any]], None],
                      *, ordered: bool = True, key: Callable[[InputRecord, int], str] | None = None,
                      done: set[str] | None = None, max_pending: int = 4096, max_sessions: int = 1024) -> int:
    """Run every cell record; ``emit(record_with_exec)`` in order (or as they finish). Returns count.

    At most ``max_sessions`` named sessions stay open (each holds a few MB): past that, the one
    idle longest is closed, and its later cells get a ``sandbox_error`` that says so -- never a
    silent fresh interpreter.

    An error anywhere (a bad input line, the reader of the output gone) ends the run at once,
    never a hang: reading, running and writing are separate tasks and the first failure wins.
    """
    sessions: dict[str, _SessionState] = {}
    # ordered: cell futures in input order; unordered: finished cell futures. None ends the writer.
    out_q: asyncio.Queue[asyncio.Future[Any] | None] = asyncio.Queue()
    done = done or set()
    n_emitted = 0
    in_flight: set[asyncio.Future[Any]] = set()
    # records read but not yet written (running, or done and waiting behind a slower one in
    # ordered mode): the semaphore bounds them, so memory stays bounded whatever the order
    sem = asyncio.Semaphore(max_pending)
    live: collections.OrderedDict[int, _SessionState] = collections.OrderedDict()  # open, least recent first
    warned = [False]  # about closing sessions past the cap

    async def make_room() -> None:
        """Close the least recently used idle named sessions until one more fits."""
        while len(live) >= max_sessions:
            victim = next((v for v in live.values() if v.session is not None and (v.last is None or v.last.done())),
                          None)
            if victim is None:
                return  # every open session has a cell queued: over the cap for a moment
            live.pop(id(victim))
            assert victim.session is not None
            await victim.session.close()
            victim.session = None
            victim.broken = (f"closed to bound memory: more than {max_sessions} sessions were open at once "
                             "(end finished sessions with \"end_session\": true, or raise --max-sessions)")
            if not warned[0]:
                log.warning("exec: more than %d sessions open at once; closing the ones idle longest (their "
                            "later cells get sandbox_error); end sessions with \"end_session\": true or raise "
                            "--max-sessions", max_sessions)
            warned[0] = True

    async def new_session(st: _SessionState | None) -> SandboxSession | ExecResult:
        """A session, or the sandbox_error result for a cell whose session could not be made."""
        if st is not None and st.broken is not None:
            return ExecResult("sandbox_error", error=f"SessionClosed: {st.broken}")
        try:
            return await pool.session()
        except SandboxError as e:  # thor's fault, not the cell's: data, like any other result
            if st is not None:  # its later cells must not run in a fresh session without its state
                st.broken = f"this session could not be created ({e})"
            return ExecResult("sandbox_error", error=f"SandboxError: {e}")

    async def cell(rec: InputRecord, k: str | None, code: str, st: _SessionState | None, timeout: float | None,
                   end: bool) -> dict[str, Any]:
        res: ExecResult | None = None
        if st is None:
            if code or not end:  # a bare end_session marker without a session runs nothing
                sess = await new_session(None)
                if isinstance(sess, ExecResult):
                    res = sess
                else:
                    async with sess:
                        res = await sess.run(code, timeout)
        else:
            prev, st_last = st.last, asyncio.get_running_loop().create_future()
            st.last = st_last
            try:
                if prev is not None:
                    await asyncio.shield(prev)
                if st.session is None and (code or not end):
                    if st.broken is None:
                        await make_room()
                    made = await new_session(st)
                    if isinstance(made, ExecResult):
                        res = made
                    else:
                        st.session = made
                        live[id(st)] = st
                        for old_code, old_t in st.replay:  # resume: rebuild the state of this session
                            await made.run(old_code, old_t)
                        st.replay.clear()
                if st.session is not None:
                    live.move_to_end(id(st))
                    res = await st.session.run(code, timeout) if code or not end else None
                    if end:
                        live.pop(id(st), None)
                        await st.session.close()
                        st.session = None
            finally:
                st_last.set_result(None)
        out = dict(rec.data)
        if res is not None:
            out["exec"] = res.to_dict()
        if k is not None:
            out["keys"] = {**(out.get("keys") or {}), "exec": k}
        return out

    async def writer() -> None:
        nonlocal n_emitted
        while True:
            fut = await out_q.get()
            if fut is None:
                return
            emit(await fut)
            n_emitted += 1
            sem.release()  # written: room for one more read-ahead record

    def finished(t: asyncio.Future[Any]) -> None:
        in_flight.discard(t)
        if not ordered and not t.cancelled():
            out_q.put_nowait(t)  # the writer emits it now, not when the next input line comes

    async def feeder() -> None:
        index = 0
        async for rec in _records_from_thread(records):
            code, name, timeout, end = parse_cell(rec)
            k = key(rec, index) if key is not None else None
            index += 1
            if k is not None and k in done:
                if name is not None:  # remember for a replay, should this session continue
                    done_st = sessions.setdefault(name, _SessionState())
                    if done_st.session is None and code:
                        done_st.replay.append((code, timeout))
                    if end:
                        sessions.pop(name, None)
                continue
            st = None if name is None else sessions.setdefault(name, _SessionState())
            if end and name is not None:
                sessions.pop(name)  # a later record with this name starts a new session
            await sem.acquire()
            task = asyncio.ensure_future(cell(rec, k, code, st, timeout, end))
            in_flight.add(task)
            task.add_done_callback(finished)
            if ordered:
                out_q.put_nowait(task)
        while in_flight:  # unordered: the writer may stop only once the last cell is queued
            await asyncio.wait(set(in_flight))
        out_q.put_nowait(None)

    feeder_task, writer_task = asyncio.ensure_future(feeder()), asyncio.ensure_future(writer())
    try:
        # the first failure wins: a writer whose reader went away must not leave the feeder
        # blocked on a full queue (a hang), nor a bad input line wait for every cell before it
        await asyncio.wait({feeder_task, writer_task}, return_when=asyncio.FIRST_EXCEPTION)
        for part in (feeder_task, writer_task):
            exc = part.exception() if part.done() else None
            if exc is not None:
                raise exc
    finally:
        for t in (feeder_task, writer_task, *in_flight):
            t.cancel()
        await asyncio.gather(feeder_task, writer_task, *in_flight, return_exceptions=True)
        for st in sessions.values():
            if st.session is not None:
                await st.session.close()
    return n_emitted
