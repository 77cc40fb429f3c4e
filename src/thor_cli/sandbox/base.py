"""What thor needs of a sandbox: ``Sandbox`` (a pool of sessions) and ``SandboxSession`` (one
interpreter whose state persists across cells).

The in-process pool (``SandboxPool``), the client of ``thor exec serve`` (``RemoteSandbox``) and
``SandboxRef`` (the given pool, or one of its own started on first use) all are a ``Sandbox``; the
python tool, the grader's code tests and ``thor exec`` take any of them. A cell's failures are
data (``ExecResult.status``), never exceptions; only thor's own failures raise (SandboxError).
"""

from __future__ import annotations

from typing import Protocol

from thor_cli.records.schema import ExecResult


class SandboxSession(Protocol):
    @property
    def alive(self) -> bool:
        """False once the session can run no more cells (its next ``run`` says why)."""
        ...

    async def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell (``timeout`` seconds; None: the pool's); never raises for what the cell does."""
        ...

    async def close(self) -> None:
        """End the session and every process in it. Idempotent."""
        ...

    async def __aenter__(self) -> SandboxSession: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Sandbox(Protocol):
    async def start(self) -> Sandbox:
        """Make it ready for sessions (once; later calls return at once) and return it."""
        ...

    async def session(self) -> SandboxSession:
        """A fresh session: no state of any other session is visible in it."""
        ...

    async def close(self) -> None:
        """End every session and release the sandbox. Idempotent."""
        ...
