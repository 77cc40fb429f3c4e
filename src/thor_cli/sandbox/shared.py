"""SandboxRef: the sandbox pool a component uses -- either one it is given (shared; its owner
closes it) or one of its own, started on first use and closed by :meth:`SandboxRef.close`.

The python tool, code grading and ``thor eval``'s code tests each need a pool only when code
actually comes, and many coroutines ask for the first session at once: exactly one pool starts
(SandboxPool.start is single: the others wait for it, a caller cancelled meanwhile does not
cancel it, and a failed start is the error of every caller rather than a retry per record).
"""

from __future__ import annotations

from thor_cli.sandbox.base import Sandbox, SandboxSession
from thor_cli.sandbox.config import SandboxConfig


class SandboxRef:
    """Itself a :class:`~thor_cli.sandbox.base.Sandbox`, so it can be handed on where a pool goes."""

    def __init__(self, pool: Sandbox | None = None, config: SandboxConfig | None = None) -> None:
        """``pool``: a started SandboxPool or a ``SandboxPool.connect(url)`` client to share;
        None: start one with ``config`` on first use."""
        self._pool = pool
        self._own = pool is None
        self.config = config or SandboxConfig()

    async def get(self) -> Sandbox:
        """The pool (started)."""
        if not self._own:
            assert self._pool is not None
            return self._pool
        if self._pool is None:
            from thor_cli.sandbox.pool import SandboxPool

            self._pool = SandboxPool(self.config)
        return await self._pool.start()  # one start, however many ask at once (SandboxPool.start)

    async def start(self) -> SandboxRef:
        await self.get()
        return self

    async def session(self) -> SandboxSession:
        return await (await self.get()).session()

    async def close(self) -> None:
        """Close the pool if it is this ref's own (a shared one is left to its owner). Idempotent;
        a start under way finishes first (SandboxPool.close)."""
        if not self._own:
            return
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
