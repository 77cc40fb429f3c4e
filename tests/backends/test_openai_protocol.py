"""The `openai` backend's HTTP side against real local servers: what it sends, how it reads
token ids back, retries on 429/5xx/connection errors, the concurrency limit, error messages."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from thor_cli.backends import SamplingParams, load_backend
from thor_cli.backends.openai import OpenAIBackend
from thor_cli.errors import BackendError

PROMPT = [1, 87, 360, 201]


def _ok(ids: list[int], **choice: Any) -> web.Response:
    body = {"index": 0, "text": "x" * len(ids), "finish_reason": "length", "token_ids": ids,
            "logprobs": {"tokens": [f"token_id:{i}" for i in ids], "token_logprobs": [-0.5] * len(ids)}}
    body.update(choice)
    return web.json_response({"choices": [body]})


def _run(tiny_model_dir: Path, servers: Any, handler: Any, params: SamplingParams | None = None,
         n: int = 1, **options: Any) -> list[Any]:
    async def main() -> list[Any]:
        async with servers.serve(servers.fake_app(handler)) as url:
            backend = OpenAIBackend(str(tiny_model_dir), base_url=url, backoff=0.01, **options)
            try:
                sp = params or SamplingParams(max_tokens=3, seed=1)
                return await asyncio.gather(*[backend.generate(PROMPT, sp) for _ in range(n)])
            finally:
                await backend.close()

    return asyncio.run(main())


def test_request_carries_token_ids_and_vllm_extras(tiny_model_dir: Path, servers: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[dict[str, Any], str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.json(), request.headers.get("Authorization")))
        return _ok([5, 6, 7])

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    params = SamplingParams(max_tokens=3, temperature=0.6, top_p=0.9, top_k=20, stop=("```output",), seed=9)
    (out,) = _run(tiny_model_dir, servers, handler, params, served_model="served-name")
    body, auth = seen[0]
    assert auth == "Bearer sk-test"
    assert body["prompt"] == PROMPT and body["model"] == "served-name"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (3, 0.6, 0.9, 20, 9)
    assert body["stop"] == ["```output"] and body["include_stop_str_in_output"] is True
    assert body["return_token_ids"] is True and body["logprobs"] == 0 and body["skip_special_tokens"] is False
    assert out.ids == [5, 6, 7] and out.logprobs == [-0.5] * 3 and out.finish_reason == "length"
    assert out.meta["retokenized"] is False


def test_ids_from_token_id_strings_when_no_token_ids_field(tiny_model_dir: Path, servers: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"text": "ab", "finish_reason": "stop", "stop_reason": None,
                                               "logprobs": {"tokens": ["token_id:8", "token_id:2"],
                                                            "token_logprobs": [-1.0, -2.0]}}]})

    (out,) = _run(tiny_model_dir, servers, handler)
    assert out.ids == [8, 2] and out.logprobs == [-1.0, -2.0]
    assert out.finish_reason == "eos" and out.meta["retokenized"] is False


def test_stop_reason_names_the_stop_string(tiny_model_dir: Path, servers: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return _ok([9, 10], finish_reason="stop", stop_reason="</code>")

    (out,) = _run(tiny_model_dir, servers, handler, SamplingParams(max_tokens=8, stop=("</code>",)))
    assert out.finish_reason == "stop" and out.stop == "</code>" and out.ids == [9, 10]


def test_429_then_success_honours_retry_after(tiny_model_dir: Path, servers: Any) -> None:
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "0"})
        return _ok([4])

    (out,) = _run(tiny_model_dir, servers, handler)
    assert out.ids == [4] and out.meta["attempts"] == 2 and len(calls) == 2


def test_5xx_retries_are_bounded_and_the_error_names_the_url(tiny_model_dir: Path, servers: Any) -> None:
    calls = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=500, text="boom") if len(calls) <= 2 else _ok([3])

    (out,) = _run(tiny_model_dir, servers, flaky)
    assert out.meta["attempts"] == 3

    down = []

    async def broken(request: web.Request) -> web.Response:
        down.append(1)
        return web.Response(status=503, text="overloaded")

    with pytest.raises(BackendError, match=r"127\.0\.0\.1:\d+/v1/completions failed after 3 tries.*503") as e:
        _run(tiny_model_dir, servers, broken, max_retries=2)
    assert len(down) == 3 and "vllm serve" in str(e.value)


def test_client_error_is_not_retried(tiny_model_dir: Path, servers: Any) -> None:
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({"error": {"message": "unknown field return_token_ids"}}, status=400)

    with pytest.raises(BackendError, match="refused the request.*unknown field") as e:
        _run(tiny_model_dir, servers, handler)
    assert len(calls) == 1 and "server_extras=False" in str(e.value)


def test_unreachable_server(tiny_model_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    backend = OpenAIBackend(str(tiny_model_dir), base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01)
    assert backend.url == f"http://127.0.0.1:{port}/v1/completions"

    async def main() -> None:
        try:
            await backend.generate(PROMPT, SamplingParams(max_tokens=2))
        finally:
            await backend.close()

    with pytest.raises(BackendError, match=f"127.0.0.1:{port}/v1/completions failed after 2 tries"):
        asyncio.run(main())


def test_concurrency_limit_is_observed_server_side(tiny_model_dir: Path, servers: Any) -> None:
    state = {"now": 0, "peak": 0}

    async def handler(request: web.Request) -> web.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return _ok([1])

    outs = _run(tiny_model_dir, servers, handler, n=12, concurrency=3)
    assert len(outs) == 12 and state["peak"] == 3


def test_garbage_answer(tiny_model_dir: Path, servers: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>not an API</html>")

    with pytest.raises(BackendError, match="not a completion"):
        _run(tiny_model_dir, servers, handler)


def test_text_only_server_is_retokenized(tiny_model_dir: Path, servers: Any, hf_tiny: Any,
                                         chat_prompt: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[Any, Any]:
        async with servers.serve(servers.completions_app(hf_tiny, text_only=True)) as url:
            monkeypatch.setenv("THOR_OPENAI_BASE_URL", url)
            backend = load_backend("openai", str(tiny_model_dir))
            try:
                sp = SamplingParams(max_tokens=12, seed=3)
                return await backend.generate(chat_prompt, sp), await hf_tiny.generate(chat_prompt, sp)
            finally:
                await backend.close()

    out, direct = asyncio.run(main())
    tok = hf_tiny.tokenizer
    assert out.meta["retokenized"] is True and out.logprobs is None
    assert out.ids == tok.encode(tok.decode(direct.ids, skip_special_tokens=True), add_special_tokens=False) + (
        [tok.eos_token_id] if direct.finish_reason == "eos" else [])


def test_bad_base_url() -> None:
    with pytest.raises(BackendError, match="not an http"):
        OpenAIBackend("whatever", base_url="ftp://x")


def test_load_weights_is_a_no_op_that_says_so_once(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from thor_cli.backends.scripted import ScriptedBackend

    backend = OpenAIBackend(str(tiny_model_dir), base_url="http://127.0.0.1:9/v1")
    scripted = ScriptedBackend(str(tiny_model_dir))

    async def main() -> None:
        for _ in range(3):
            await backend.load_weights("/some/checkpoint")
            await scripted.load_weights({})
        await backend.close()

    with caplog.at_level("WARNING", logger="thor"):
        asyncio.run(main())
    said = [r for r in caplog.records if "load_weights does nothing" in r.getMessage()]
    assert len(said) == 1 and "127.0.0.1:9" in said[0].getMessage()
    assert scripted.weight_loads == 3
