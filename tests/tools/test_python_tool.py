"""The python tool over the real sandbox: stateful sessions, failures as ExecResult."""

from __future__ import annotations

import asyncio

from thor_cli.tools import build_tools


def test_cells_share_state_and_fail_as_data() -> None:
    async def go() -> list[str]:
        tool = build_tools(("python",), timeout=5.0, memory_mb=1024, workers=1)["python"]
        await tool.start()
        try:
            a, b = await tool.session(), await tool.session()
            r = [await a.run("x = 21"), await a.run("print(x * 2)"), await b.run("print(x)"),
                 await a.run("1/0")]
            await a.close()
            await b.close()
            return [f"{x.status}:{x.stdout.strip()}:{x.error or ''}" for x in r]
        finally:
            await tool.close()

    out = asyncio.run(go())
    assert out[0] == "ok::" and out[1] == "ok:42:"
    assert out[2].startswith("error::NameError")  # sessions are isolated
    assert out[3].startswith("error::ZeroDivisionError")
