"""The session API other parts of thor code against: state, results, concurrency, closing."""

from __future__ import annotations

import asyncio
import os

import pytest
from tests.sandbox.conftest import TEST_CONFIG

from thor_cli.records.schema import ExecResult
from thor_cli.sandbox import SandboxConfig, SandboxPool


def test_state_persists_and_results_are_typed(cells) -> None:
    a, b, c, d = cells("import sympy as sp\nx = sp.sqrt(8)", "print(x)", "1/0", "x")
    assert isinstance(a, ExecResult) and a.status == "ok" and a.stdout == ""  # printed nothing: ok and ""
    assert b.stdout == "2*sqrt(2)\n" and b.error is None and b.duration_ms >= 0
    assert c.status == "error" and c.error == "ZeroDivisionError: division by zero"
    assert 'File "<cell>", line 1' in c.stderr and "run_cell" not in c.stderr
    assert d.status == "ok" and d.stdout == ""  # plain exec: a trailing expression is not echoed


def test_syntax_error_is_error(cells) -> None:
    (res,) = cells("def f(:\n  pass")
    assert res.status == "error" and res.error.startswith("SyntaxError")


def test_stderr_and_fd_level_output(cells) -> None:
    (res,) = cells("import sys, subprocess\nprint('out')\nprint('err', file=sys.stderr)\nsubprocess.run(['echo', 'child'])")
    assert res.stdout == "out\nchild\n" and res.stderr == "err\n"


def test_run_timeout_argument_wins(cells) -> None:
    (res,) = cells("import time\ntime.sleep(3)", timeout=0.3)
    assert res.status == "timeout"  # the cell's 0.3 s, not the pool's 10 s: sleep(3) would have ended "ok"


def test_many_sessions_concurrently(pool, run) -> None:
    async def one(i: int) -> str:
        async with await pool.session() as s:
            await s.run(f"v = {i}")
            return (await s.run("import numpy as np\nprint(int(np.arange(v + 1).sum()))")).stdout

    async def go() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(60)))

    assert run(go()) == [f"{i * (i + 1) // 2}\n" for i in range(60)]


def test_concurrent_runs_on_one_session_queue_in_order(pool, run) -> None:
    async def go() -> list[str]:
        async with await pool.session() as s:
            await s.run("acc = []")
            await asyncio.gather(*(s.run(f"acc.append({i})") for i in range(20)))
            return [(await s.run("print(acc)")).stdout]

    assert run(go()) == [f"{list(range(20))}\n"]


def test_closed_session_gives_clear_error(pool, run) -> None:
    async def go() -> ExecResult:
        s = await pool.session()
        await s.run("x = 1")
        await s.close()
        await s.close()  # idempotent
        return await s.run("print(x)")

    res = run(go())
    assert res.status == "killed" and "closed" in res.error


def test_fresh_sessions_get_fresh_random_state(pool, run) -> None:
    """Sessions are forks of one warm interpreter; each must still draw its own random numbers
    (as a new interpreter would), and threading must work in it as usual."""

    async def one() -> str:
        async with await pool.session() as s:
            code = ("import random, threading, numpy as np\nbox = []\nt = threading.Thread(target=lambda: box.append(1))\n"
                    "t.start(); t.join()\nprint(random.getrandbits(64), np.random.randint(2**62), box, "
                    "threading.current_thread() is threading.main_thread())")
            return (await s.run(code)).stdout

    async def go() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(6)))

    outs = run(go())
    assert all(o.endswith(" [1] True\n") for o in outs), outs
    assert len({o.split()[0] for o in outs}) == 6, outs
    assert len({o.split()[1] for o in outs}) == 6, outs  # numpy.random is preloaded, and re-seeded


def _thp_available() -> bool:
    try:
        mode = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return "[never]" not in mode and (major, minor) >= (6, 1)  # MADV_COLLAPSE came in 6.1


@pytest.mark.skipif(not _thp_available(), reason="needs transparent huge pages and Linux 6.1+ (MADV_COLLAPSE)")
def test_warm_heap_is_in_huge_pages_and_can_be_turned_off(pool, run) -> None:
    assert pool.hugepages_mb >= 8  # the warm numpy+sympy heap is tens of MiB

    async def plain() -> tuple[int, str]:
        async with SandboxPool(SandboxConfig(workers=1, hugepages=False)) as p:
            async with await p.session() as s:
                return p.hugepages_mb, (await s.run("import sympy as sp\nprint(sp.sqrt(8))")).stdout

    assert run(plain()) == (0, "2*sqrt(2)\n")


def test_stdout_buffer_takes_bytes(cells) -> None:
    (res,) = cells("import sys\nsys.stdout.buffer.write('héllo\\n'.encode())\nsys.stdout.buffer.flush()\nprint('ok')")
    assert res.status == "ok" and res.stdout == "héllo\nok\n", res


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_cells_running_at_once_run_on_cores_of_their_own(pool, run) -> None:
    cell = "import os, time\ntime.sleep(0.3)\nprint(sorted(os.sched_getaffinity(0)))"

    async def go(p: SandboxPool) -> list[str]:
        async def one() -> str:
            async with await p.session() as s:
                return (await s.run(cell)).stdout.strip()

        return list(await asyncio.gather(one(), one()))

    a, b = run(go(pool))  # the shared pool has two slots: both cells run at once
    if not pool._cpus:  # sched_setaffinity was refused (a host without CAP_SYS_NICE): logged, not pinned
        pytest.skip("this host may not pin the sandbox's processes")
    assert a != b and len(eval(a)) == len(eval(b)) == 1, (a, b)  # one core each, not the same one

    async def unpinned() -> list[str]:
        async with SandboxPool(SandboxConfig(**{**TEST_CONFIG, "pin_cells": False})) as p:
            return await go(p)

    assert run(unpinned()) == [str(sorted(os.sched_getaffinity(0)))] * 2  # the kernel places them


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sessions_work_on_either_event_loop(loop: str) -> None:
    """thor runs on uvloop (thor_cli/aio.py); a library caller may bring asyncio's own loop."""
    factory = asyncio.new_event_loop if loop == "asyncio" else pytest.importorskip("uvloop").new_event_loop

    async def go() -> list[tuple[str, str]]:
        async with SandboxPool(SandboxConfig(**{**TEST_CONFIG, "workers": 1})) as p:
            async with await p.session() as s:
                out = [await s.run("x = 41"), await s.run("print(x + 1)"), await s.run("1/0"),
                       await s.run("while True:\n    pass", timeout=0.3), await s.run("import os\nos._exit(3)"),
                       await s.run("print(1)")]
        return [(r.status, r.stdout) for r in out]

    with asyncio.Runner(loop_factory=factory) as runner:
        got = runner.run(go())
    assert got == [("ok", ""), ("ok", "42\n"), ("error", ""), ("timeout", ""), ("killed", ""), ("killed", "")], got
