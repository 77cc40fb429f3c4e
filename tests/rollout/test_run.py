"""RolloutEngine.run: slots refill as soon as a trajectory finishes; an early exit cleans up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.rollout import RolloutConfig, RolloutEngine


class Gated:
    """Stands in for RolloutEngine.rollout: each item waits for its gate; records starts and ends."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.ended: list[str] = []

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def start(self, key: str) -> asyncio.Event:
        return self.started.setdefault(key, asyncio.Event())

    async def rollout(self, problem: dict[str, Any], key: str, sample: int) -> dict[str, Any]:
        self.start(key).set()
        try:
            await self.gate(key).wait()
            return {"sample": sample, "key": key}
        finally:
            self.ended.append(key)


def _engine(tok: Any, gated: Gated) -> RolloutEngine:
    eng = RolloutEngine(ScriptedBackend(tokenizer=tok, script=["x"]), RolloutConfig(tools=()), tools={})
    eng.rollout = gated.rollout  # type: ignore[method-assign]
    return eng


def _items(n: int) -> list[tuple[dict[str, Any], str, int]]:
    return [({"id": str(i), "question": "q"}, str(i), 0) for i in range(n)]


def test_slots_refill_while_the_consumer_is_busy(tok: Any) -> None:
    gated = Gated()
    eng = _engine(tok, gated)

    async def go() -> list[str]:
        got: list[str] = []
        gated.gate("0").set()
        async with contextlib.aclosing(eng.run(_items(4), concurrency=2)) as stream:
            async for (_, key, _), _ in stream:
                got.append(key)
                if key == "0":
                    # the consumer is busy with item 0 (say, grading it): item 2 took 0's slot
                    # already, and when 1 finishes now, 3 must start without waiting for the consumer
                    await asyncio.wait_for(gated.start("2").wait(), 5)
                    gated.gate("1").set()
                    await asyncio.wait_for(gated.start("3").wait(), 5)
                    gated.gate("2").set()
                    gated.gate("3").set()
        return got

    got = asyncio.run(go())
    assert sorted(got) == ["0", "1", "2", "3"] and got[0] == "0"


def test_consumer_error_cancels_and_awaits_running_trajectories(tok: Any) -> None:
    gated = Gated()
    eng = _engine(tok, gated)

    async def go() -> list[str]:
        gated.gate("0").set()
        with pytest.raises(RuntimeError, match="consumer failed"):
            async with contextlib.aclosing(eng.run(_items(10), concurrency=3)) as stream:
                async for _ in stream:
                    raise RuntimeError("consumer failed")
        return list(gated.ended)  # right after the error: nothing may still be running

    ended = asyncio.run(go())
    assert sorted(ended) == sorted(gated.started) and len(ended) >= 3


def test_items_error_propagates_and_running_trajectories_are_awaited(tok: Any) -> None:
    gated = Gated()
    eng = _engine(tok, gated)

    def items() -> Any:
        yield from _items(2)
        raise ValueError("bad input line")

    async def go() -> tuple[list[str], list[str]]:
        got: list[str] = []
        gated.gate("0").set()  # 0 finishes; the next pull fails while 1 is running
        with pytest.raises(ValueError, match="bad input line"):
            async with contextlib.aclosing(eng.run(items(), concurrency=2)) as stream:
                async for (_, key, _), _ in stream:
                    got.append(key)
        return got, list(gated.ended)

    got, ended = asyncio.run(go())
    assert got == ["0"] and sorted(ended) == sorted(gated.started) == ["0", "1"]
