"""SandboxRef: many first callers at once start exactly one pool; a shared pool is never closed
by a ref; an own pool is closed, even when closing comes while it is still starting."""

from __future__ import annotations

import asyncio

from tests.sandbox.conftest import TEST_CONFIG

from thor_cli.sandbox import SandboxConfig, SandboxPool, SandboxRef


def test_concurrent_first_sessions_start_one_pool_and_close_closes_it(pool_starts: list[SandboxPool]) -> None:
    async def go() -> list[str]:
        ref = SandboxRef(config=SandboxConfig(**{**TEST_CONFIG, "workers": 1}))

        async def one(i: int) -> str:
            sess = await ref.session()
            async with sess:
                return (await sess.run(f"print({i})")).stdout

        outs = await asyncio.gather(*(one(i) for i in range(6)))
        pool = await ref.get()
        await ref.close()
        assert pool.closing and all(not w.alive for w in pool.workers)
        return outs

    assert asyncio.run(go()) == [f"{i}\n" for i in range(6)]
    assert len(pool_starts) == 1  # was: one pool per concurrent first caller in thor eval's code tests


def test_a_shared_pool_is_left_to_its_owner_and_closing_while_starting_closes_it() -> None:
    async def go() -> tuple[bool, str, bool]:
        async with SandboxPool(SandboxConfig(**{**TEST_CONFIG, "workers": 1})) as shared:
            ref = SandboxRef(shared)
            await ref.close()  # not ours: nothing happens to it
            async with await ref.session() as s:
                out = (await s.run("print(7)")).stdout
            closed_shared = shared.closing
        own = SandboxRef(config=SandboxConfig(**{**TEST_CONFIG, "workers": 1}))
        getter = asyncio.ensure_future(own.get())
        await asyncio.sleep(0)  # its start is under way
        await own.close()
        pool = await getter  # the start finished, then close closed it
        return closed_shared, out, pool.closing

    assert asyncio.run(go()) == (False, "7\n", True)


def test_first_sessions_at_once_on_an_unstarted_pool_start_it_once(pool_starts: list[SandboxPool]) -> None:
    """Was: the second caller found the workers not yet up, started a replacement worker, and the
    first one's jail outlived close()."""

    async def go() -> tuple[list[str], list[int | None]]:
        p = SandboxPool(SandboxConfig(**{**TEST_CONFIG, "workers": 1}))

        async def one(i: int) -> str:
            async with await p.session() as s:
                return (await s.run(f"print({i})")).stdout

        try:
            outs = list(await asyncio.gather(*(one(i) for i in range(4))))
        finally:
            await p.close()
        return outs, [w.proc.returncode if w.proc else None for w in p.workers]

    outs, codes = asyncio.run(go())
    assert outs == [f"{i}\n" for i in range(4)]
    assert len(pool_starts) == 1 and len(codes) == 1 and codes[0] is not None  # one worker, and it ended
