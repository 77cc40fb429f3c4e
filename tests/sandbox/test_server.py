"""``thor exec serve`` over a Unix socket, used through SandboxPool.connect (same session API)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thor_cli.sandbox import SandboxPool


@pytest.mark.slow
def test_serve_and_connect(tmp_path: Path) -> None:
    sock = tmp_path / "sb.sock"
    proc = subprocess.Popen([sys.executable, "-m", "thor_cli.cli.app", "exec", "serve", "--unix", str(sock),
                             "--workers", "1"], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists(), proc.stderr.read() if proc.poll() is not None else "no socket"

        async def go() -> list[object]:
            async with SandboxPool.connect(f"unix:{sock}") as pool:
                async with await pool.session() as a, await pool.session() as b:
                    out = [await a.run("x = 6"), await b.run("print('x' in dir())"), await a.run("print(x * 7)")]
                    out.append(await a.run("while True:\n    x = 1", timeout=0.3))
                    out.append(a.alive)  # the soft timeout interrupted the loop: still alive
                    out.append(await a.run("import os\nos._exit(1)"))
                    out.append(a.alive)  # the server said so
                    return out

        set_x, other, got, slow, alive_after_timeout, dead, alive_after_exit = asyncio.run(go())
        assert set_x.status == "ok" and other.stdout == "False\n" and got.stdout == "42\n"
        assert slow.status == "timeout" and dead.status in ("killed",)
        assert alive_after_timeout is True and alive_after_exit is False
    finally:
        proc.terminate()
        proc.wait(10)
