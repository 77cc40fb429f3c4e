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
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from thor_cli.errors import InputError
from thor_cli.records.jsonl import InputRecord
from thor_cli.records.schema import ExecResult
from thor_cli.sandbox.pool import SandboxPool, Session

_END = object()


@dataclass
class _SessionState:
    session: Session | None = None
    last: asyncio.Future[Any] | None = None  # the previous cell of this session
    replay: list[tuple[str, float | None]] = field(default_factory=list)


def parse_cell(rec: InputRecord) -> tuple[str, str | None, float | None, bool]:
    code = rec.optional("code", str, "")
    sess = rec.optional("session", (str, int))
    timeout = rec.optional("timeout", (int, float))
    if timeout is not None and timeout <= 0:
        raise InputError("must be a positive number of seconds", path=rec.path, line=rec.line, field="timeout")
    end = rec.optional("end_session", bool, False)
    if "code" not in rec.data and not end:
        rec.require("code")  # raises: a cell record needs code (or is only an end_session marker)
    return code, None if sess is None else str(sess), None if timeout is None else float(timeout), end


async def _records_from_thread(records: Iterator[InputRecord]) -> AsyncIterator[Any]:
    """Read the (blocking) input in a thread so running cells are never held up by stdin."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
    stop = threading.Event()

    def pump() -> None:
        try:
            for rec in records:
                if stop.is_set():
                    return
                asyncio.run_coroutine_threadsafe(q.put(rec), loop).result()
            item: Any = _END
        except BaseException as e:  # noqa: BLE001 -- handed to the event loop, raised there
            item = e
        asyncio.run_coroutine_threadsafe(q.put(item), loop).result()

    t = threading.Thread(target=pump, daemon=True, name="thor-exec-input")
    t.start()
    try:
        while True:
            item = await q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


async def run_records(pool: SandboxPool, records: Iterator[InputRecord], emit: Callable[[dict[str, Any]], None],
                      *, ordered: bool = True, key: Callable[[InputRecord, int], str] | None = None,
                      done: set[str] | None = None, max_pending: int = 4096) -> int:
    """Run every cell record; ``emit(record_with_exec)`` in order (or as they finish). Returns count."""
    sessions: dict[str, _SessionState] = {}
    pending: asyncio.Queue[asyncio.Future[Any] | None] = asyncio.Queue(maxsize=max_pending)
    done = done or set()
    n_emitted = 0

    async def cell(rec: InputRecord, k: str | None, code: str, st: _SessionState | None, timeout: float | None,
                   end: bool) -> dict[str, Any]:
        res: ExecResult | None
        if st is None:
            async with await pool.session() as sess:
                res = await sess.run(code, timeout)
        else:
            prev, st_last = st.last, asyncio.get_running_loop().create_future()
            st.last = st_last
            try:
                if prev is not None:
                    await asyncio.shield(prev)
                if st.session is None:
                    st.session = await pool.session()
                    for old_code, old_t in st.replay:  # resume: rebuild the state of this session
                        await st.session.run(old_code, old_t)
                    st.replay.clear()
                res = await st.session.run(code, timeout) if code or not end else None
                if end:
                    await st.session.close()
                    st.session = None
            finally:
                st_last.set_result(None)
        out = dict(rec.data)
        if res is not None:
            out["exec"] = res.to_dict()
        if k is not None:
            out.setdefault("keys", {})
            out["keys"] = {**(out.get("keys") or {}), "exec": k}
        return out

    async def writer() -> None:
        nonlocal n_emitted
        while True:
            fut = await pending.get()
            if fut is None:
                return
            emit(await fut)
            n_emitted += 1

    out_q: asyncio.Queue[Any] = asyncio.Queue()
    writer_task = asyncio.create_task(writer()) if ordered else None
    in_flight: set[asyncio.Future[Any]] = set()
    sem = asyncio.Semaphore(max_pending)

    def finished(t: asyncio.Future[Any]) -> None:
        in_flight.discard(t)
        sem.release()
        if not ordered:
            out_q.put_nowait(t)

    def drain_unordered() -> None:
        nonlocal n_emitted
        while not out_q.empty():
            emit(out_q.get_nowait().result())
            n_emitted += 1

    try:
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
                await pending.put(task)
            else:
                drain_unordered()
        if ordered:
            await pending.put(None)
            assert writer_task is not None
            await writer_task
        else:
            while in_flight:
                await asyncio.wait(set(in_flight))
                drain_unordered()
            drain_unordered()
    finally:
        if writer_task is not None and not writer_task.done():
            writer_task.cancel()
        for t in list(in_flight):
            t.cancel()
        for st in sessions.values():
            if st.session is not None:
                await st.session.close()
    return n_emitted
