"""CellSlots: never more than n cells at once; first come, first served; the next waiter starts
inside release itself; a session whose next cell is already there keeps its slot only within its
time slice; cancelled and withdrawn waiters leak nothing."""

from __future__ import annotations

import asyncio
import random

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


def test_a_next_cell_sent_by_another_task_keeps_the_slot_too() -> None:
    """thor exec run sends a session's next cell from another task, which waits for the cell
    before: it asks a few turns of the loop after the release, and still keeps the slot."""

    async def go() -> list[str]:
        slots, order = CellSlots(1, slice_s=10.0), []
        loop = asyncio.get_running_loop()
        before: asyncio.Future[None] = loop.create_future()
        before.set_result(None)

        async def chained(prev: asyncio.Future[None], mine: asyncio.Future[None]) -> None:
            await asyncio.shield(prev)  # as run_records' cell() waits for the session's last cell
            try:
                await _one_cell(slots, "batch", order, 0.001)
            finally:
                mine.set_result(None)

        tasks = []
        for _ in range(4):
            mine = loop.create_future()
            tasks.append(asyncio.ensure_future(chained(before, mine)))
            before = mine

        async def other() -> None:
            await asyncio.sleep(0.0005)  # queues while batch runs its first cell
            await _one_cell(slots, "other", order)

        await asyncio.gather(*tasks, other())
        return order

    assert asyncio.run(go()) == ["batch"] * 4 + ["other"]


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


