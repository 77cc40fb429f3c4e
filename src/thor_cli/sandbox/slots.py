"""CellSlots: at most ``workers`` cells execute at once, handed out first come, first served; as an
option for batch work (``SandboxConfig.slice_s``), a session may keep its slot for a while.

A slot is granted by calling the owner's ``start`` callback, synchronously: at once when one is
free, otherwise from :meth:`release`, inside the very callback that read the previous cell's
reply. So the next waiting cell's request is on its way to its interpreter before the event loop
does anything else (no task to wake, no loop turn in between). Each owner holds at most one
slot (a session runs one cell at a time).

With ``slice_s > 0``, a session that finishes a cell and asks for a slot again within the loop's
next few turns (``KEEP_TURNS``: its next cell was already waiting, as in a batch over a file,
where the next cell is another task that waits for the last one) keeps its slot: its process
is still warm in the CPU's caches, and its pages hot in the memory allocator's. It keeps it
for consecutive cells only up to ``slice_s`` seconds while other sessions wait, then queues
behind them. The price is tail latency for the others: on 2 cores, 8 sessions running trivial
cells back to back, p99.9 went from 5 ms (strict turns) to 150 ms with ``slice_s=0.05``.
Rollouts gain nothing from it (the model writes a session's next cell long after its slot was
given on), so the pool's default is 0; ``thor exec run``, a batch, uses 0.05 (``--slice``).
On the mixed workload of bench/exec_bench.py (100 sessions open at once) slices cut the
machine's CPU by a sixth: a hundred sessions taking turns cell by cell keep each other's
caches cold.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Hashable

# Turns of the event loop a released slot waits for its owner's next cell when slices are on: a
# cell's result reaches the coroutine that sent it in one turn, and a next cell that waits for it
# in another task (thor exec run) asks in the turn after.
KEEP_TURNS = 3


class Ticket:
    """A place in the queue; :meth:`CellSlots.withdraw` takes it back before it is served."""

    __slots__ = ("owner", "start")

    def __init__(self, owner: Hashable, start: Callable[[], None] | None) -> None:
        self.owner, self.start = owner, start


class CellSlots:
    def __init__(self, n: int, slice_s: float = 0.0) -> None:
        if n < 1:
            raise ValueError("CellSlots needs at least one slot")
        self.free, self.slice_s = n, slice_s
        self._queue: collections.deque[Ticket] = collections.deque()
        self._waiting = 0  # tickets in the queue not withdrawn
        self._held: dict[Hashable, float] = {}  # owner -> start of its run of consecutive cells
        self._kept: dict[Hashable, tuple[float, int]] = {}  # released this turn, kept for its owner
        self._serial = itertools.count()

    def request(self, owner: Hashable, start: Callable[[], None]) -> Ticket | None:
        """Call ``start()`` once ``owner`` has a slot: now (and return None) or later, from
        :meth:`release` (and return the ticket, for :meth:`withdraw`). ``start`` must not raise."""
        kept = self._kept.pop(owner, None)
        if kept is not None:  # the slot this owner released in this turn of the loop
            self._held[owner] = kept[0]
            start()
            return None
        if self.free > 0 and not self._waiting:
            self.free -= 1
            self._held[owner] = time.monotonic()
            start()
            return None
        ticket = Ticket(owner, start)
        self._queue.append(ticket)
        self._waiting += 1
        return ticket

    def withdraw(self, ticket: Ticket) -> bool:
        """Leave the queue; False when the ticket was already served (its owner holds a slot)."""
        if ticket.start is None:
            return False
        ticket.start = None  # dropped from the queue when its turn comes
        self._waiting -= 1
        return True

    def release(self, owner: Hashable) -> None:
        """``owner`` is done with its slot: it goes to the next in the queue, now."""
        token = self._held.pop(owner)
        if self._waiting and self.slice_s > 0 and time.monotonic() - token < self.slice_s:
            serial = next(self._serial)
            self._kept[owner] = (token, serial)  # keep it for this owner for a few turns of the loop
            asyncio.get_running_loop().call_soon(self._expire, owner, serial, KEEP_TURNS)
        else:
            self._hand_on()

    def _expire(self, owner: Hashable, serial: int, turns: int) -> None:
        kept = self._kept.get(owner)
        if kept is not None and kept[1] == serial:
            if turns > 1:
                asyncio.get_running_loop().call_soon(self._expire, owner, serial, turns - 1)
                return
            del self._kept[owner]
            self._hand_on()

    def _hand_on(self) -> None:
        while self._queue:
            ticket = self._queue.popleft()
            start, ticket.start = ticket.start, None
            if start is not None:
                self._waiting -= 1
                self._held[ticket.owner] = time.monotonic()
                start()
                return
        self.free += 1

    async def acquire(self, owner: Hashable) -> None:
        """Wait for a slot (for code that holds it across awaits; give it back with :meth:`release`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def granted() -> None:
            if fut.cancelled():  # cancelled after its turn came, before it ran: pass it on
                self.release(owner)
            else:
                fut.set_result(None)

        ticket = self.request(owner, granted)
        try:
            await fut
        except asyncio.CancelledError:
            if ticket is not None:
                self.withdraw(ticket)
            if fut.done() and not fut.cancelled():
                self.release(owner)  # granted just as we were cancelled
            raise
