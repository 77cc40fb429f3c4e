"""CellSlots: at most ``workers`` cells execute at once, handed out first come, first served; as an
option for batch work (``SandboxConfig.slice_s``), a session may keep its slot for a while.

With ``slice_s > 0``, a session that finishes a cell and asks for a slot again in the same turn
of the event loop (its next cell was already waiting, as in a batch over a file) keeps its slot:
its process is still warm in the CPU's caches and no other coroutine has to be woken to take
over. It keeps it for consecutive cells only up to ``slice_s`` seconds while other sessions
wait, then queues behind them. The price is tail latency for the others: on 2 cores, 8 sessions
running trivial cells back to back, p99.9 went from 5 ms (strict turns) to 150 ms with
``slice_s=0.05``; the mixed workload of bench/exec_bench.py (100 sessions open at once) went
from 1.61 s to 1.31 s. Rollouts gain nothing from it (the model writes a session's next cell
long after its slot was given on), so the default is 0: strict turns.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import Any


class CellSlots:
    def __init__(self, n: int, slice_s: float = 0.0) -> None:
        if n < 1:
            raise ValueError("CellSlots needs at least one slot")
        self.free, self.slice_s = n, slice_s
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._kept: dict[Any, tuple[float, int]] = {}  # owner -> (start of its run of cells, serial)
        self._serial = itertools.count()

    async def acquire(self, owner: Any) -> float:
        """Wait for a slot; returns a token to give back to :meth:`release`."""
        kept = self._kept.pop(owner, None)
        if kept is not None:  # the slot this owner released in this turn of the loop
            return kept[0]
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return time.monotonic()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._hand_on()  # granted just as we were cancelled: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise
        return time.monotonic()

    def release(self, owner: Any, token: float) -> None:
        if self._waiters and time.monotonic() - token < self.slice_s:
            serial = next(self._serial)
            self._kept[owner] = (token, serial)  # keep it for this owner until the loop's next turn
            asyncio.get_running_loop().call_soon(self._expire, owner, serial)
        else:
            self._hand_on()

    def _expire(self, owner: Any, serial: int) -> None:
        kept = self._kept.get(owner)
        if kept is not None and kept[1] == serial:
            del self._kept[owner]
            self._hand_on()

    def _hand_on(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():  # a cancelled waiter may still sit here until its task runs
                fut.set_result(None)
                return
        self.free += 1
