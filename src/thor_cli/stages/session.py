"""``RunSession``: the lifetimes of one run's sandbox pool, backend, tools and rollout engine.

    async with RunSession(opts) as run:          # opts: RunOptions
        async for item, fields in run.engine.run(items, concurrency=opts.concurrency): ...
        run.pool                                  # the sandbox pool (None without the python tool)

Started in that order (the pool first, so that its warm interpreters fork before a model is in
memory) and closed in reverse, also on errors. One pool serves the python tool and whatever else
the stage hands it (``thor eval``'s code tests). ``backend=`` runs on a backend the caller owns
and closes (a trainer's live policy, a scripted backend in tests).
"""

from __future__ import annotations

from typing import Any

from thor_cli.log import log
from thor_cli.sandbox.base import Sandbox
from thor_cli.stages.options import RunOptions


class RunSession:
    def __init__(self, opts: RunOptions, *, backend: Any = None) -> None:
        self.opts = opts
        self.cfg = opts.rollout_config()  # checks the values before anything starts
        self._given_backend = backend
        self.backend: Any = backend
        self.pool: Sandbox | None = None
        self.tools: dict[str, Any] = {}
        self.engine: Any = None

    async def __aenter__(self) -> RunSession:
        from thor_cli.rollout import RolloutEngine, get_protocol

        get_protocol(self.opts.protocol)  # a usage error before loading any model
        try:
            if "python" in self.cfg.tools:
                from thor_cli.sandbox import SandboxPool

                url = self.opts.sandbox_url
                self.pool = await (SandboxPool.connect(url) if url else SandboxPool(self.opts.sandbox_config())).start()
            if self.backend is None:
                self.backend = self._load_backend()
            if self.cfg.tools:
                from thor_cli.tools import build_tools

                o = self.opts
                self.tools = build_tools(self.cfg.tools, timeout=o.timeout, memory_mb=o.memory, workers=o.workers,
                                         search_corpus=o.search_corpus, search_url=o.search_url,
                                         sandbox_pool=self.pool)
            engine = RolloutEngine(self.backend, self.cfg, tools=self.tools)
            await engine.__aenter__()
            self.engine = engine
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    def _load_backend(self) -> Any:
        from thor_cli.backends import load_backend

        o = self.opts
        options = dict(o.backend_options)
        if o.backend == "openai":
            options.setdefault("base_url", o.base_url)
            options.setdefault("api_key", o.api_key)
            options.setdefault("concurrency", o.concurrency)
        return load_backend(o.backend, o.model, **options)

    async def _close(self) -> None:
        engine, self.engine = self.engine, None
        try:
            if engine is not None:
                await engine.__aexit__(None, None, None)
        finally:
            try:
                if self.backend is not None and self._given_backend is None:
                    await self.backend.close()
            finally:
                pool, self.pool = self.pool, None
                if pool is not None:
                    try:
                        await pool.close()
                    except Exception as e:  # noqa: BLE001 -- closing must not mask the real error
                        log.warning("closing the sandbox pool failed: %s", e)
