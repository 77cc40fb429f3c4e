"""The ``python`` tool: code cells run in the thor sandbox, one stateful session per trajectory.

A trajectory's cells share one interpreter session (imports and variables persist between them),
unlike the reference implementation where every cell starts from nothing. The sandbox pool is
started once per engine; its limits (time, memory, workers) come from ``SandboxConfig``.
"""

from __future__ import annotations

from thor_cli.records.schema import ExecResult
from thor_cli.sandbox import Sandbox, SandboxConfig, SandboxRef, SandboxSession


class _PySession:
    def __init__(self, sess: SandboxSession) -> None:
        self._sess = sess

    async def run(self, call: str) -> ExecResult:
        return await self._sess.run(call)

    async def close(self) -> None:
        try:
            await self._sess.close()
        except Exception:  # noqa: BLE001 -- a session that is already gone is closed
            pass


class PythonTool:
    """Runs code cells in sandbox sessions. ``pool`` may be given (shared) or is built from limits."""

    name = "python"
    stateful = True

    def __init__(self, *, timeout: float = 10.0, memory_mb: int = 1024, workers: int | None = None,
                 pool: Sandbox | None = None) -> None:
        self._ref = SandboxRef(pool, SandboxConfig(timeout=timeout, memory_mb=memory_mb, workers=workers or None))

    @property
    def timeout(self) -> float:
        return self._ref.config.timeout

    async def start(self) -> None:
        await self._ref.get()

    async def session(self) -> _PySession:
        return _PySession(await self._ref.session())

    async def close(self) -> None:
        await self._ref.close()
