"""The tool interface the rollout engine calls, and a scripted tool for tests and benchmarks.

A ``Tool`` is started once per engine and opens one ``ToolSession`` per trajectory. A session
runs one call (code for ``python``, a query for ``search``) and returns an ``ExecResult``: the
same record type ``thor exec`` writes, so failures are data, never exceptions. A tool raises
only when thor's own machinery fails (SandboxError); the engine records that in the
trajectory's ``error``.

``stateful`` tools keep state across a session's calls (the python sandbox); the engine rebuilds
such a session by replaying the kept cells after a self-correction drops a cell, and when it
continues from a prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from thor_cli.records.schema import ExecResult


@runtime_checkable
class ToolSession(Protocol):
    async def run(self, call: str) -> ExecResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class Tool(Protocol):
    name: str
    stateful: bool

    async def start(self) -> None: ...

    async def session(self) -> ToolSession: ...

    async def close(self) -> None: ...


CallFn = Callable[[str], ExecResult | Awaitable[ExecResult]]


class _FnSession:
    def __init__(self, tool: FunctionTool) -> None:
        self.tool = tool
        self.history: list[str] = []  # calls this session ran, in order (tests inspect replays)

    async def run(self, call: str) -> ExecResult:
        self.history.append(call)
        self.tool.calls.append(call)
        if self.tool.delay:
            if self.tool._sem is not None:
                async with self.tool._sem:
                    await self._sleep()
            else:
                await self._sleep()
        res = self.tool.fn(call)
        if asyncio.iscoroutine(res) or isinstance(res, Awaitable):
            res = await res
        assert isinstance(res, ExecResult)
        return res

    async def _sleep(self) -> None:
        t0 = time.perf_counter()
        await asyncio.sleep(self.tool.delay)
        self.tool.busy_s += time.perf_counter() - t0

    async def close(self) -> None:
        self.tool.closed_sessions += 1


class FunctionTool:
    """A tool whose result is a function of the call: for tests and benchmarks.

    ``delay`` seconds per call, at most ``workers`` calls at once (like a sandbox pool).
    """

    def __init__(self, name: str, fn: CallFn | None = None, *, stateful: bool = False, delay: float = 0.0,
                 workers: int | None = None) -> None:
        self.name = name
        self.stateful = stateful
        self.fn: CallFn = fn or (lambda call: ExecResult(status="ok", stdout=f"{call.strip()}\n"))
        self.delay = delay
        self.workers = workers
        self._sem: asyncio.Semaphore | None = None
        self.calls: list[str] = []
        self.sessions: list[_FnSession] = []
        self.closed_sessions = 0
        self.busy_s = 0.0  # seconds spent in simulated execution (delay), summed over calls

    async def start(self) -> None:
        if self.workers:
            self._sem = asyncio.Semaphore(self.workers)

    async def session(self) -> ToolSession:
        s = _FnSession(self)
        self.sessions.append(s)
        return s

    async def close(self) -> None:
        return None
