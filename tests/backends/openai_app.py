"""Local HTTP servers that speak vLLM's OpenAI dialect, for the backend tests (through the
``servers`` fixture of conftest.py) and for tests/train/rl/vllm_standin.py (a process of its own).

`serve(app)` starts a real aiohttp server on 127.0.0.1 (random port) inside the caller's event
loop. `completions_app(hf)` implements vLLM's /v1/completions (token-id prompts, return_token_ids,
return_tokens_as_token_ids, include_stop_str_in_output, stop_reason) on top of an HFBackend, or,
with ``text_only=True``, a server that answers with text alone and cuts the stop string off,
as OpenAI's hosted API does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from thor_cli.backends.base import SamplingParams


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 on a free port; yield its base URL (ending in /v1)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def completions_app(hf: Any, *, text_only: bool = False,
                    seen: list[dict[str, Any]] | None = None) -> web.Application:
    """/v1/completions backed by ``hf`` (an HFBackend), speaking vLLM's dialect."""
    tok = hf.tokenizer

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if seen is not None:
            seen.append(body)
        prompt = body["prompt"]
        if not (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)):
            return web.json_response({"error": {"message": "prompt must be token ids here"}}, status=400)
        params = SamplingParams(max_tokens=body.get("max_tokens", 16), temperature=body.get("temperature", 1.0),
                                top_p=body.get("top_p", 1.0), top_k=body.get("top_k", -1),
                                stop=tuple(body.get("stop") or ()), seed=body.get("seed"))
        c = await hf.generate(prompt, params)
        extras = not text_only
        text = tok.decode(c.ids, skip_special_tokens=not (extras and body.get("skip_special_tokens") is False))
        if c.finish_reason == "stop" and not (extras and body.get("include_stop_str_in_output")):
            text = text[: text.find(c.stop)]
        choice: dict[str, Any] = {"index": 0, "text": text,
                                  "finish_reason": "length" if c.finish_reason == "length" else "stop"}
        if extras:
            choice["stop_reason"] = c.stop
            if body.get("return_token_ids"):
                choice["token_ids"] = c.ids
            if body.get("logprobs") is not None:
                as_ids = body.get("return_tokens_as_token_ids")
                choice["logprobs"] = {"tokens": [f"token_id:{t}" if as_ids else tok.decode([t]) for t in c.ids],
                                      "token_logprobs": c.logprobs, "top_logprobs": None, "text_offset": []}
        return web.json_response({"id": "cmpl-1", "object": "text_completion", "model": body.get("model"),
                                  "choices": [choice], "usage": {"prompt_tokens": len(prompt),
                                                                 "completion_tokens": len(c.ids)}})

    app = web.Application()
    app.router.add_post("/v1/completions", handle)
    return app


def fake_app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    return app
