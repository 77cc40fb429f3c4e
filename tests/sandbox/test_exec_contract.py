"""``thor exec``'s contract at its edges: streaming, failures that must end a run (never hang it),
sessions thor cannot make, bounds on timeouts and flags, and the server's answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from thor_cli.errors import PipeClosed, SandboxError
from thor_cli.records.jsonl import InputRecord
from thor_cli.sandbox import SandboxConfig, SandboxPool
from thor_cli.sandbox.runner import run_records
from thor_cli.sandbox.server import make_app

from .test_cli import lines, thor


def recs(*data: dict[str, Any]) -> Iterator[InputRecord]:
    return (InputRecord(d, "t.jsonl", i) for i, d in enumerate(data, 1))


def test_unordered_emits_a_result_before_the_next_input_line(pool: SandboxPool, run: Callable[..., Any]) -> None:
    # a producer that writes the next line only once it has the previous result (a coprocess)
    got = threading.Event()
    waited: list[bool] = []

    def producer() -> Iterator[InputRecord]:
        yield InputRecord({"i": 1, "code": "print(1)"}, "t", 1)
        waited.append(got.wait(10))
        yield InputRecord({"i": 2, "code": "print(2)"}, "t", 2)

    out: list[dict[str, Any]] = []

    def emit(rec: dict[str, Any]) -> None:
        out.append(rec)
        got.set()

    assert run(run_records(pool, producer(), emit, ordered=False)) == 2
    assert waited == [True] and [r["exec"]["stdout"] for r in out] == ["1\n", "2\n"]


def test_reader_gone_ends_a_long_run_instead_of_hanging(pool: SandboxPool, run: Callable[..., Any]) -> None:
    # `thor exec big.jsonl | head -n 3`: more records than may wait for the writer
    def emit(rec: dict[str, Any]) -> None:
        if rec["i"] >= 3:
            raise PipeClosed()

    for ordered in (True, False):
        with pytest.raises(PipeClosed):
            run(run_records(pool, recs(*({"i": i, "code": "pass"} for i in range(40))), emit, ordered=ordered,
                            max_pending=4), timeout=30)


class _FailingPool:
    """A pool whose first ``fail`` sessions cannot be made (thor's fault: all slots in use, say)."""

    def __init__(self, pool: SandboxPool, fail: int) -> None:
        self.pool, self.fail = pool, fail

    async def session(self) -> Any:
        if self.fail > 0:
            self.fail -= 1
            raise SandboxError("all session slots of every worker are in use")
        return await self.pool.session()


def test_a_session_thor_cannot_make_is_sandbox_error_data(pool: SandboxPool, run: Callable[..., Any]) -> None:
    out: list[dict[str, Any]] = []
    data = ({"session": "a", "code": "x = 1"}, {"session": "a", "code": "print(x)"}, {"code": "print(3)"},
            {"session": "a", "end_session": True}, {"end_session": True}, {"session": "a", "code": "print(4)"})
    run(run_records(_FailingPool(pool, 1), recs(*data), out.append))  # type: ignore[arg-type]
    ex = [r.get("exec") for r in out]
    assert ex[0]["status"] == "sandbox_error" and "slots" in ex[0]["error"]
    # never a fresh interpreter in place of the one that holds x
    assert ex[1]["status"] == "sandbox_error" and "SessionClosed" in ex[1]["error"]
    assert ex[2]["stdout"] == "3\n"
    assert ex[3] is None and ex[4] is None  # end_session markers without code run nothing
    assert ex[5]["stdout"] == "4\n"  # a later record with that name is a new session


@pytest.mark.parametrize(("rec", "field"), [({"code": "1", "timeout": 1e10}, "timeout"),
                                            ({"code": "1", "timeout": 1e-7}, "timeout"),
                                            ({"code": None}, "code")])
def test_unusable_record_values_are_input_errors(tmp_path: Path, rec: dict[str, Any], field: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(lines({"code": "print(1)"}, rec))
    out = tmp_path / "out.jsonl"
    p = thor("exec", str(src), "-o", str(out))
    assert p.returncode == 1 and f'{src}:2: field "{field}"' in p.stderr and "Traceback" not in p.stderr
    assert not out.exists() and (tmp_path / "out.jsonl.part").exists()


@pytest.mark.parametrize("flag", [["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "1e10"],
                                  ["--memory", "0"], ["--workers", "-1"], ["--max-output", "0"]])
def test_unusable_flags_are_usage_errors(flag: list[str]) -> None:
    p = thor("exec", *flag, stdin=lines({"code": "print(1)"}))
    assert p.returncode == 2 and f"Error: {flag[0]}" in p.stderr and p.stdout == ""


def test_server_answers(tmp_path: Path, run: Callable[..., Any]) -> None:
    sock = str(tmp_path / "sb.sock")

    async def go() -> dict[str, Any]:
        import aiohttp
        from aiohttp import web

        pool = await SandboxPool(SandboxConfig(workers=1, memory_mb=768, timeout=5.0)).start()
        runner = web.AppRunner(make_app(pool, idle_s=0.2))
        await runner.setup()
        await web.UnixSite(runner, sock).start()
        got: dict[str, Any] = {}
        try:
            async with SandboxPool.connect(f"unix:{sock}") as client:
                sess = await client.session()
                # a cell that runs longer than idle_s: its session is busy, not idle
                got["long"] = await sess.run("import time\ntime.sleep(1)\ny = 2\nprint(y)")
                got["after"] = await sess.run("print(y + 1)")
                with pytest.raises(SandboxError) as e:
                    await client._call("GET", "/no/such/route")
                got["404"] = str(e.value)
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as h:
                sid = (await (await h.post("http://sb/sessions")).json())["session"]
                r = await h.post(f"http://sb/sessions/{sid}/run", data=json.dumps({"code": "1", "timeout": 1e-7}))
                got["tiny"] = (r.status, await r.json())
                r = await h.post(f"http://sb/sessions/{sid}/run", data=json.dumps({"code": "print(5)"}))
                got["still"] = (await r.json())["stdout"]
        finally:
            await runner.cleanup()
        return got

    got = run(go())
    assert got["long"].stdout == "2\n" and got["after"].stdout == "3\n"
    assert "HTTP 404" in got["404"]
    assert got["tiny"][0] == 400 and "timeout" in got["tiny"][1]["error"]
    assert got["still"] == "5\n"  # the refused request did not cost the session


@pytest.mark.slow
def test_read_ahead_stays_bounded_behind_a_slow_first_cell(pool: SandboxPool, run: Callable[..., Any]) -> None:
    """In input order, finished results wait behind a slow first cell: at most ``max_pending``
    records may be read and not yet written, so memory stays bounded (was: all of the input)."""
    pulled, written, peak = [0], [0], [0]

    def source() -> Iterator[InputRecord]:
        yield InputRecord({"i": 0, "code": "import time\ntime.sleep(1.0)"}, "t", 1)
        for i in range(1, 1600):
            pulled[0] += 1
            peak[0] = max(peak[0], pulled[0] - written[0])
            yield InputRecord({"i": i, "code": "pass"}, "t", i + 1)

    def emit(rec: dict[str, Any]) -> None:
        written[0] += 1

    assert run(run_records(pool, source(), emit, ordered=True, max_pending=8), timeout=60) == 1600
    assert peak[0] <= 1024 + 8 + 2, peak[0]  # + what the input thread may hold (runner: 1024)


def test_sessions_past_the_cap_are_closed_idle_longest_first_and_say_so(pool: SandboxPool,
                                                                         run: Callable[..., Any]) -> None:
    order = ["a", "b", "c", "a", "d", "b", "a", "d"]  # cap 3: d evicts b (idle longest), not a
    seen = threading.Semaphore(0)

    def source() -> Iterator[InputRecord]:  # one record at a time: the next after the last result
        for i, name in enumerate(order):
            if i:
                assert seen.acquire(timeout=30)
            code = f"x = '{name}'" if name not in order[:i] else "print(x)"
            yield InputRecord({"i": i, "session": name, "code": code}, "t", i + 1)

    out: list[dict[str, Any]] = []

    def emit(rec: dict[str, Any]) -> None:
        out.append(rec)
        seen.release()

    assert run(run_records(pool, source(), emit, max_sessions=3)) == len(order)
    got = [(r["session"], r["exec"]["status"], r["exec"]["stdout"] or r["exec"]["error"] or "") for r in out]
    assert got[3] == ("a", "ok", "a\n") and got[6] == ("a", "ok", "a\n") and got[7] == ("d", "ok", "d\n")
    assert got[5][:2] == ("b", "sandbox_error") and "closed to bound memory" in got[5][2], got
