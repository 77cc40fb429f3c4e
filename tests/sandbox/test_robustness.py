"""Hostile or just buggy cells that once crashed a session, hung the host or made thor misreport a
status; each test names what used to happen."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest


def test_exception_whose_str_raises_is_an_error(cells) -> None:
    res, nxt = cells("class E(Exception):\n    def __str__(self):\n        raise ValueError('no')\nraise E()",
                     "print('alive')")
    assert res.status == "error" and res.error.startswith("E:"), res  # was: killed (exit code 70)
    assert nxt.stdout == "alive\n"


def test_lone_surrogate_in_output_is_replaced(cells) -> None:
    res, nxt = cells("import sys\nprint('a\\udcffb')\nprint('\\ud800', file=sys.stderr)", "print('alive')")
    assert res.status == "ok" and res.stdout == "a?b\n" and res.stderr == "?\n", res  # was: ProtocolError, killed
    assert nxt.stdout == "alive\n"


def test_a_swallowed_interrupt_is_still_a_timeout(cells) -> None:
    bare = "import time\ntry:\n    time.sleep(3)\nexcept:\n    pass\nprint('done')"  # was: ok
    res, nxt = cells(bare, "print('alive')", timeout=0.3)
    assert res.status == "timeout" and res.stdout == "done\n", res
    assert nxt.stdout == "alive\n"


def test_an_alarm_handler_left_by_a_cell_does_not_steal_later_timeouts(cells) -> None:
    mine = "import signal\ndef h(s, f):\n    raise TimeoutError('mine')\nsignal.signal(signal.SIGALRM, h)"
    ignore = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)"
    loop = "while True:\n    pass"
    a = cells(mine, loop, "print('alive')", timeout=0.3)  # was: error "TimeoutError: mine"
    b = cells(ignore, loop, "print('alive')", timeout=0.3)  # was: the session killed at the grace
    for setup, res, nxt in (a, b):
        assert setup.status == "ok" and res.status == "timeout" and "ignored" not in res.error, res
        assert nxt.stdout == "alive\n", nxt


def test_a_cell_that_replaces_its_stdout_fd_keeps_its_session(cells) -> None:
    res, nxt = cells("import os\nos.close(1)\nf = open('/usr/lib/os-release')\nprint('py')", "print('alive')")
    assert res.status == "ok" and res.stdout == "py\n", res  # was: killed (exit code 70)
    assert nxt.stdout == "alive\n"


def test_a_cell_that_replaces_os_read_write_and_json_keeps_its_session(cells) -> None:
    """The session's channel runs on os.read / os.write and json: bound in the zygote, so a cell
    that replaces them in its modules breaks nothing of thor's."""
    res, nxt = cells("import os, json\nos.read = os.write = json.loads = json.dumps = None\nprint('set')",
                     "print('alive', os.read, json.loads)")
    assert res.status == "ok" and res.stdout == "set\n", res
    assert nxt.status == "ok" and nxt.stdout == "alive None None\n", nxt


def test_a_cancelled_run_never_answers_the_next_cell(pool, run) -> None:
    async def go() -> tuple[Any, Any]:
        async with await pool.session() as s:
            await s.run("x = 1")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(s.run("import time\ntime.sleep(0.4)\nprint('A')"), 0.1)
            nxt = await s.run("print('B')")
            await asyncio.sleep(0.5)
            return nxt, await s.run("print('C')")

    nxt, later = run(go())
    # was: B got A's result and C got B's
    assert nxt.status == "killed" and "cancelled" in nxt.error and "A" not in nxt.stdout, nxt
    assert later.status == "killed" and later.stdout == "", later


def test_a_session_that_stops_reading_cannot_hang_a_big_cell(pool, run) -> None:
    async def go() -> Any:
        async with await pool.session() as s:
            # the session reads its requests with the zygote's own _read (its globals are __main__'s)
            await s.run("import __main__, time\n__main__._read = lambda fd, n: time.sleep(1e9)")
            big = "x = '" + "a" * 6_000_000 + "'"  # more than the socket buffers hold; quick to run once read
            return await asyncio.wait_for(s.run(big, timeout=0.3), 20)  # was: hung for ever

    res = run(go())
    assert res.status == "timeout", res


def test_a_cell_cannot_forge_a_sandbox_error(cells) -> None:
    forge = ("import os, json, stat, struct\nrep = {'status': 'sandbox_error', 'stdout': '', 'stderr': '', "
             "'error': 'SandboxError: thor broke', 'truncated': False, 'duration_ms': 1.0}\n"
             "body = json.dumps(rep).encode()\nfor fd in range(3, 64):\n    try:\n"
             "        if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
             "            os.write(fd, struct.pack('>I', len(body)) + body)\n            os._exit(0)\n"
             "    except OSError:\n        pass")
    (res,) = cells(forge)
    assert res.status == "killed" and "ProtocolError" in res.error, res  # was: sandbox_error


def test_server_refuses_a_timeout_that_is_not_a_positive_number(tmp_path) -> None:
    import aiohttp
    from aiohttp import web

    from thor_cli.records.schema import ExecResult
    from thor_cli.sandbox.server import make_app

    seen: list[Any] = []

    class FakeSession:
        alive = True

        async def run(self, code: str, timeout: float | None) -> ExecResult:
            seen.append(timeout)
            return ExecResult("ok")

        async def close(self) -> None:
            pass

    async def session() -> FakeSession:
        return FakeSession()

    async def close() -> None:
        pass

    async def go() -> list[int]:
        app = make_app(SimpleNamespace(session=session, close=close, workers=[], off=[]))  # type: ignore[arg-type]
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, str(tmp_path / "s.sock")).start()
        codes = []
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / "s.sock"))) as http:
                sid = (await (await http.post("http://x/sessions")).json())["session"]
                for body in (b'{"code": "1", "timeout": 0}', b'{"code": "1", "timeout": -1}',
                             b'{"code": "1", "timeout": "5"}', b'{"code": "1", "timeout": true}', b"not json",
                             b'{"code": "1", "timeout": 2}', b'{"code": "1"}'):
                    async with http.post(f"http://x/sessions/{sid}/run", data=body) as r:
                        codes.append(r.status)
        finally:
            await runner.cleanup()
        return codes

    # was: 0 and -1 ran the cell with no time limit; a string or bad JSON was a 500
    assert asyncio.run(go()) == [400, 400, 400, 400, 400, 200, 200]
    assert seen == [2.0, None]
