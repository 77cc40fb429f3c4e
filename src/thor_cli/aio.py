"""The event loop thor runs its coroutines on: uvloop's where it is installed, else asyncio's.

The sandbox's host side is mostly event-loop work per cell (a reply read, a future resolved, the
next request written): on bench/exec_bench.py's mixed workload uvloop cut it from about 150 to
95 microseconds of CPU per cell, and the workload ran 13% faster on 2 cores. Everything in thor
also runs on asyncio's own loop (``THOR_EVENT_LOOP=asyncio``, and what a library caller brings).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _uvloop() -> Any:
    if os.environ.get("THOR_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def loop_name() -> str:
    return "uvloop" if _uvloop() is not None else "asyncio"


def new_event_loop() -> asyncio.AbstractEventLoop:
    uv = _uvloop()
    return uv.new_event_loop() if uv is not None else asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on :func:`new_event_loop`'s loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
