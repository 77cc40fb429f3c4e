"""``thor exec serve``: a SandboxPool's sessions over HTTP (TCP or a Unix socket). Its client,
RemoteSandbox (``SandboxPool.connect(url)``), is in client.py.

Routes: ``POST /sessions`` -> ``{"session": id}``; ``POST /sessions/{id}/run`` with
``{"code", "timeout"}`` -> the ExecResult as JSON; ``DELETE /sessions/{id}``; ``GET /health``.
Sessions idle for ``idle_s`` (default 15 min) are closed, so a client that died leaks nothing.
No authentication: listen on localhost, a Unix socket, or a private network.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson

from thor_cli import aio
from thor_cli.errors import SandboxError
from thor_cli.log import log
from thor_cli.records.schema import ExecResult
from thor_cli.sandbox.config import SandboxConfig, timeout_problem
from thor_cli.sandbox.pool import SandboxPool
from thor_cli.sandbox.session import Session


def make_app(pool: SandboxPool, idle_s: float = 900.0) -> Any:
    from aiohttp import web

    sessions: dict[str, tuple[Session, float]] = {}
    ids = itertools.count(1)

    def js(obj: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")

    async def create(_: web.Request) -> web.Response:
        sid = f"s{next(ids)}"
        try:
            sessions[sid] = (await pool.session(), time.monotonic())
        except SandboxError as e:  # the client raises it as a SandboxError with this text
            log.warning("thor exec serve: %s", e)
            return js({"error": str(e)}, 503)
        return js({"session": sid})

    async def run(req: web.Request) -> web.Response:
        entry = sessions.get(req.match_info["sid"])
        if entry is None:
            return js({**ExecResult("killed", error="SessionClosed: no such session (closed, or idle too long)").to_dict(),
                       "alive": False})
        try:
            body = orjson.loads(await req.read())
        except orjson.JSONDecodeError:
            body = None
        timeout = body.get("timeout") if isinstance(body, dict) else None
        why = timeout_problem(timeout)  # 0 or less would let the cell run for ever on a shared worker
        if not isinstance(body, dict) or not isinstance(body.get("code"), str) or why is not None:
            what = f" (timeout: {why})" if isinstance(body, dict) and why else ""
            return js({"error": f'expected {{"code": str, "timeout": seconds|null}}{what}'}, 400)
        sid = req.match_info["sid"]
        try:
            res = await entry[0].run(body["code"], None if timeout is None else float(timeout))
        finally:
            if sid in sessions:
                sessions[sid] = (entry[0], time.monotonic())  # idle from the end of its last cell
        return js({**res.to_dict(), "alive": entry[0].alive})  # the client needs no guess from the text

    async def delete(req: web.Request) -> web.Response:
        entry = sessions.pop(req.match_info["sid"], None)
        if entry is not None:
            await entry[0].close()
        return js({})

    async def health(_: web.Request) -> web.Response:
        return js({"workers": sum(w.alive for w in pool.workers), "sessions": len(sessions), "off": pool.off})

    async def reaper() -> None:
        while True:
            await asyncio.sleep(min(idle_s, 30))
            now = time.monotonic()
            for sid, (sess, seen) in list(sessions.items()):
                if now - seen > idle_s and not sess.busy:  # never in the middle of a cell
                    sessions.pop(sid, None)
                    await sess.close()

    # held here, not under a web.AppKey: making one looks for a module-level caller frame and
    # fails when make_app runs in a thread's event loop
    reaper_task: list[asyncio.Task[None]] = []

    async def on_startup(app: web.Application) -> None:
        reaper_task.append(asyncio.create_task(reaper()))

    async def on_cleanup(app: web.Application) -> None:
        for t in reaper_task:
            t.cancel()
        await pool.close()

    app = web.Application(client_max_size=64 << 20)
    app.add_routes([web.post("/sessions", create), web.post("/sessions/{sid}/run", run),
                    web.delete("/sessions/{sid}", delete), web.get("/health", health)])
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(cfg: SandboxConfig, *, host: str = "127.0.0.1", port: int = 8765, unix: str | None = None) -> None:
    """Run the server until interrupted."""
    from aiohttp import web

    async def go() -> None:
        pool = await SandboxPool(cfg).start()
        runner = web.AppRunner(make_app(pool))
        await runner.setup()
        site: web.BaseSite = web.UnixSite(runner, unix) if unix else web.TCPSite(runner, host, port)
        await site.start()
        log.info("thor exec serve: listening on %s (%d workers)", f"unix:{unix}" if unix else f"http://{host}:{port}",
                 cfg.n_workers)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    aio.run(go())
