"""SandboxRef: the sandbox pool a component uses -- either one it is given (shared; its owner
closes it) or one of its own, started on first use and closed by :meth:`SandboxRef.close`.

The python tool, code grading and ``thor eval``'s code tests each need a pool only when code
actually comes, and many coroutines ask for the first session at once: exactly one pool starts
(the others wait for it), a caller cancelled meanwhile does not cancel the start, and a failed
start is the error of every caller rather than a retry per record.
"""

from __future__ import annotations

import asyncio
from typing import Any

from thor_cli.sandbox.config import SandboxConfig


class SandboxRef:
    def __init__(self, pool: Any = None, config: SandboxConfig | None = None) -> None:
        """``pool``: a started SandboxPool or a ``SandboxPool.connect(url)`` client to share;
        None: start one with ``config`` on first use."""
        self._pool = pool
        self._own = pool is None
        self.config = config or SandboxConfig()
        self._starting: asyncio.Task[Any] | None = None

    async def get(self) -> Any:
        """The pool (started)."""
        if self._pool is not None:
            return self._pool
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> Any:
        from thor_cli.sandbox.pool import SandboxPool

        self._pool = await SandboxPool(self.config).start()
        return self._pool

    async def session(self) -> Any:
        return await (await self.get()).session()

    async def close(self) -> None:
        """Close the pool if it is this ref's own (a shared one is left to its owner). Idempotent."""
        starting, self._starting = self._starting, None
        if not self._own:
            return
        if starting is not None:  # closed while starting: let it finish (about a second), then close it
            await asyncio.gather(starting, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
