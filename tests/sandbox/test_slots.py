"""CellSlots: never more than n cells at once; first come, first served; the next waiter starts
inside release itself; a session whose next cell is already there keeps its slot only within its
time slice; cancelled and withdrawn waiters leak nothing."""

from __future__ import annotations

import asyncio
import random

from thor_cli.records.jsonl import InputRecord
from thor_cli.records.schema import ExecResult
from thor_cli.sandbox.runner import run_records
from thor_cli.sandbox.slots import CellSlots


async def _one_cell(slots: CellSlots, owner: str, order: list[str], seconds: float = 0.0) -> None:
    await slots.acquire(owner)
    order.append(owner)
    if seconds:
        await asyncio.sleep(seconds)
    slots.release(owner)


def test_never_more_than_n_at_once_and_every_slot_comes_back() -> None:
    async def go() -> tuple[int, int]:
        slots, held, peak = CellSlots(3, slice_s=0.01), [0], [0]

        async def owner(i: int) -> None:
            rng = random.Random(i)
            for _ in range(20):
                await slots.acquire(i)
                held[0] += 1
                peak[0] = max(peak[0], held[0])
                await asyncio.sleep(rng.random() / 2000)
                held[0] -= 1
                slots.release(i)

        await asyncio.gather(*(owner(i) for i in range(12)))
        await asyncio.sleep(0)  # a slot kept for its owner comes back on the loop's next turn
        return peak[0], slots.free

    assert asyncio.run(go()) == (3, 3)


def test_a_session_with_its_next_cell_ready_keeps_the_slot_within_its_slice() -> None:
    async def go(slice_s: float) -> list[str]:
        slots, order = CellSlots(1, slice_s=slice_s), []

        async def batch() -> None:
            for _ in range(5):
                await _one_cell(slots, "batch", order, 0.001)

        async def other() -> None:
            await asyncio.sleep(0.0005)  # queues while batch runs its first cell
            await _one_cell(slots, "other", order)

        await asyncio.gather(batch(), other())
        return order

    assert asyncio.run(go(10.0)) == ["batch"] * 5 + ["other"]
    assert asyncio.run(go(0.0)) == ["batch", "other"] + ["batch"] * 4  # no slice: strict turns


class _SlotSession:
    """A session as the pool's: a cell takes a slot, its "reply" comes from a loop callback that
    resolves the run and then gives the slot on (as session._Channel does); the run returns after."""

    alive = True

    def __init__(self, slots: CellSlots, order: list[str]) -> None:
        self.slots, self.order = slots, order

    async def run(self, code: str, timeout: float | None = None) -> ExecResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ExecResult] = loop.create_future()

        def reply() -> None:
            fut.set_result(ExecResult("ok"))
            self.slots.release(self)

        def start() -> None:
            self.order.append(code)
            loop.call_later(0.001, reply)

        self.slots.request(self, start)
        return await fut

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> _SlotSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class _SlotPool:
    def __init__(self, slice_s: float) -> None:
        self.slots, self.order = CellSlots(1, slice_s=slice_s), []

    async def start(self) -> _SlotPool:
        return self

    async def session(self) -> _SlotSession:
        return _SlotSession(self.slots, self.order)

    async def close(self) -> None:
        pass


def test_thor_exec_runs_a_sessions_waiting_cells_back_to_back_within_its_slice() -> None:
    """thor exec run (run_records) sends a session's next cell from another task, which waits for
    the cell before: it asks a few turns of the loop after the release (KEEP_TURNS), and with a
    slice still keeps the slot; in strict turns the sessions alternate."""
    data = [{"session": s, "code": f"{s}{i}"} for i in range(4) for s in "ab"]

    def order(slice_s: float) -> list[str]:
        pool = _SlotPool(slice_s)
        records = (InputRecord(d, "t.jsonl", n) for n, d in enumerate(data, 1))
        asyncio.run(run_records(pool, records, lambda rec: None))  # type: ignore[arg-type]
        return pool.order

    assert order(10.0) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    assert order(0.0) == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]


def test_a_slot_its_owner_does_not_ask_for_again_at_once_goes_to_the_next_waiter() -> None:
    async def go() -> list[str]:
        slots, order = CellSlots(1, slice_s=10.0), []

        async def rollout() -> None:
            await _one_cell(slots, "r", order, 0.001)
            await asyncio.sleep(0.005)  # the model generates: its next cell comes later
            await _one_cell(slots, "r", order)

        async def other() -> None:
            await asyncio.sleep(0.0005)
            await _one_cell(slots, "o", order)

        await asyncio.gather(rollout(), other())
        return order

    assert asyncio.run(go()) == ["r", "o", "r"]


def test_cancelled_waiters_leak_no_slot() -> None:
    async def go() -> int:
        slots = CellSlots(1)
        await slots.acquire("a")
        waiters = [asyncio.ensure_future(slots.acquire(f"w{i}")) for i in range(4)]
        await asyncio.sleep(0)
        waiters[0].cancel()
        waiters[2].cancel()
        slots.release("a")  # w0 is cancelled: w1 gets it
        waiters[1].cancel()  # granted, then cancelled before it ran: passed on to w3
        await asyncio.gather(*waiters, return_exceptions=True)
        assert waiters[3].done() and not waiters[3].cancelled()
        slots.release("w3")
        await asyncio.sleep(0)
        return slots.free

    assert asyncio.run(go()) == 1


def test_release_starts_the_next_waiter_before_returning() -> None:
    async def go() -> list[str]:
        slots, events = CellSlots(1), []
        assert slots.request("a", lambda: events.append("a starts")) is None  # a free slot: at once
        tb = slots.request("b", lambda: events.append("b starts"))
        tc = slots.request("c", lambda: events.append("c starts"))
        assert tb is not None and tc is not None and events == ["a starts"]
        assert slots.withdraw(tb) and not slots.withdraw(tb)  # b leaves the queue before its turn
        slots.release("a")
        events.append("release returned")
        assert not slots.withdraw(tc)  # served already
        slots.release("c")
        return [*events, f"free {slots.free}"]

    assert asyncio.run(go()) == ["a starts", "c starts", "release returned", "free 1"]


