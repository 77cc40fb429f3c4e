"""RemoteSandbox: the client of ``thor exec serve`` (server.py), with the pool's session API
(sandbox.base.Sandbox), so the rollout engine, the grader and ``thor exec`` take either::

    async with SandboxPool.connect("http://node7:8765") as pool:     # or "unix:/tmp/thor.sock"
        async with await pool.session() as sess:
            res = await sess.run("print(1)")                          # ExecResult
"""

from __future__ import annotations

from typing import Any

import orjson

from thor_cli.errors import SandboxError
from thor_cli.records.schema import ExecResult


class RemoteSession:
    """A session on a ``thor exec serve`` server; same API as :class:`Session`."""

    def __init__(self, client: RemoteSandbox, sid: str) -> None:
        self.client, self.sid, self.alive = client, sid, True

    async def run(self, code: str, timeout: float | None = None) -> ExecResult:
        try:
            data = await self.client._call("POST", f"/sessions/{self.sid}/run", {"code": code, "timeout": timeout})
        except SandboxError as e:
            return ExecResult("sandbox_error", error=f"SandboxError: {e}")
        self.alive = bool(data.pop("alive", False))
        return ExecResult.from_dict(data)

    async def close(self) -> None:
        if self.alive:
            self.alive = False
            try:
                await self.client._call("DELETE", f"/sessions/{self.sid}")
            except SandboxError:
                pass

    async def __aenter__(self) -> RemoteSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RemoteSandbox:
    """Client of ``thor exec serve``: ``url`` is ``http://host:port`` or ``unix:/path/to.sock``."""

    def __init__(self, url: str, *, request_timeout: float = 600.0) -> None:
        self.url, self.request_timeout = url, request_timeout
        self._http: Any = None

    async def start(self) -> RemoteSandbox:
        import aiohttp

        conn: aiohttp.BaseConnector
        if self.url.startswith("unix:"):
            conn = aiohttp.UnixConnector(path=self.url[5:])
            self._base = "http://sandbox"
        else:
            conn = aiohttp.TCPConnector(limit=0)
            self._base = self.url.rstrip("/")
        self._http = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        return self

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import aiohttp

        if self._http is None:
            await self.start()
        try:
            async with self._http.request(method, self._base + path,
                                          data=None if body is None else orjson.dumps(body)) as r:
                raw = await r.read()
                if r.status != 200:  # aiohttp's own 404/405 answers are plain text, not JSON
                    raise SandboxError(f"sandbox server {self.url}: HTTP {r.status} on {method} {path}: "
                                       f"{raw[:500].decode('utf-8', 'replace')}",
                                       "check the URL: it is http://HOST:PORT or unix:/path/to.sock of thor exec serve")
                return orjson.loads(raw)
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as e:
            raise SandboxError(f"sandbox server {self.url} unreachable or broken ({e})",
                               "check that thor exec serve runs there") from None

    async def session(self) -> RemoteSession:
        return RemoteSession(self, (await self._call("POST", "/sessions"))["session"])

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> RemoteSandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
