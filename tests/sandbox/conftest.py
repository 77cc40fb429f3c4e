"""A sandbox pool shared by this folder's tests, driven by an event loop in a background thread.

Starting a pool costs about a second (each warm interpreter imports numpy and sympy), so tests
share one; every test still gets fresh sessions. ``run(coro)`` runs a coroutine on that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from thor_cli.sandbox import SandboxConfig, SandboxPool

TEST_CONFIG = dict(workers=2, memory_mb=768, timeout=5.0, max_output=2000)


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture(scope="session")
def pool(loop_thread: LoopThread) -> Iterator[SandboxPool]:
    p = loop_thread.run(SandboxPool(SandboxConfig(**TEST_CONFIG)).start())
    yield p
    loop_thread.run(p.close())


@pytest.fixture
def run(loop_thread: LoopThread) -> Callable[..., Any]:
    return loop_thread.run


@pytest.fixture
def cells(pool: SandboxPool, run: Callable[..., Any]) -> Callable[..., Any]:
    """cells("a = 1", "print(a)", timeout=2) -> the ExecResults of those cells in one fresh session."""

    def go(*codes: str, timeout: float | None = None) -> list[Any]:
        async def inner() -> list[Any]:
            async with await pool.session() as sess:
                return [await sess.run(c, timeout) for c in codes]

        return run(inner())

    return go
