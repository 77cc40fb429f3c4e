"""The ``python`` tool: code cells run in the thor sandbox, one stateful session per trajectory.

A trajectory's cells share one interpreter session (imports and variables persist between them),
unlike the reference implementation where every cell starts from nothing. The sandbox pool is
started once per engine; its limits (time, memory, workers) come from ``SandboxConfig``.
"""

from __future__ import annotations

from typing import Any

from thor_cli.errors import SandboxError
from thor_cli.records.schema import ExecResult


class _PySession:
    def __init__(self, sess: Any) -> None:
        self._sess = sess

    async def run(self, call: str) -> ExecResult:
        return await self._sess.run(call)  # type: ignore[no-any-return]

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
                 pool: Any = None) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.workers = workers
        self._pool = pool
        self._own_pool = pool is None
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        if self._pool is None:
            try:
                from thor_cli.sandbox import SandboxConfig, SandboxPool
            except ImportError as e:
                raise SandboxError(f"the sandbox is not available ({e})", "reinstall thor") from None
            self._pool = SandboxPool(SandboxConfig(timeout=self.timeout, memory_mb=self.memory_mb,
                                                   workers=self.workers or None))
        if self._own_pool:
            await self._pool.__aenter__()
        self._started = True

    async def session(self) -> _PySession:
        if not self._started:
            await self.start()
        sess = await self._pool.session()
        return _PySession(sess)

    async def close(self) -> None:
        if self._started and self._own_pool and self._pool is not None:
            await self._pool.__aexit__(None, None, None)
            self._pool = None
        self._started = False
