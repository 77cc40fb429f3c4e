"""A stand-in for a vLLM OpenAI server, for thor rl's tests of trainer ranks that share one
generation server: the routes thor's ``vllm-server`` backend uses, in vLLM's dialect, on thor's
``hf`` backend and the test's tiny model (vLLM itself needs .venv-vllm and SmolLM2; that tier is
test_rl_vllm.py, ``-m vllm``).

    python vllm_standin.py MODEL_DIR PORT_FILE     # serves on a free port, writes it to PORT_FILE

Routes: ``GET /v1/models``; ``POST /v1/completions`` (token-id prompts; ``return_token_ids``,
``logprobs``: the processed log-probs, ``stop_reason``); ``POST /collective_rpc`` with
``reload_weights`` (reads ``weights_path/model.safetensors``, as vLLM's workers do with thor's
worker extension) or ``thor_repack_gemms`` (nothing to do here); ``POST /reset_prefix_cache``;
``GET /stats``: how many completions and reloads it served.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from thor_cli.backends.base import SamplingParams
from thor_cli.backends.hf import HFBackend


def app_for(hf: HFBackend) -> web.Application:
    stats = {"completions": 0, "reloads": 0, "prefix_resets": 0}

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "standin", "max_model_len": hf.max_context}]})

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["prompt"]
        params = SamplingParams(max_tokens=body.get("max_tokens", 16), temperature=body.get("temperature", 1.0),
                                top_p=body.get("top_p", 1.0), top_k=body.get("top_k", -1),
                                stop=tuple(body.get("stop") or ()), seed=body.get("seed"))
        c = await hf.generate(prompt, params)
        stats["completions"] += 1
        text = hf.tokenizer.decode(c.ids, skip_special_tokens=body.get("skip_special_tokens") is not False)
        if c.finish_reason == "stop" and not body.get("include_stop_str_in_output"):
            text = text[: text.find(c.stop)]
        choice: dict[str, Any] = {"index": 0, "text": text, "stop_reason": c.stop,
                                  "finish_reason": "length" if c.finish_reason == "length" else "stop"}
        if body.get("return_token_ids"):
            choice["token_ids"] = c.ids
        if body.get("logprobs") is not None:
            choice["logprobs"] = {"tokens": [f"token_id:{t}" for t in c.ids], "token_logprobs": c.logprobs,
                                  "top_logprobs": None, "text_offset": []}
        return web.json_response({"id": "cmpl", "object": "text_completion", "model": body.get("model"),
                                  "choices": [choice],
                                  "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(c.ids)}})

    async def collective_rpc(request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "reload_weights":
            from safetensors.torch import load_file

            state = load_file(str(Path(body["kwargs"]["weights_path"]) / "model.safetensors"))
            await hf.load_weights(state)
            stats["reloads"] += 1
        return web.json_response({"results": [None]})

    async def reset_prefix_cache(request: web.Request) -> web.Response:
        stats["prefix_resets"] += 1
        return web.json_response({})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/collective_rpc", collective_rpc)
    app.router.add_post("/reset_prefix_cache", reset_prefix_cache)
    app.router.add_get("/stats", get_stats)
    return app


async def main(model_dir: str, port_file: str) -> None:
    hf = HFBackend(model_dir, max_batch=16)
    runner = web.AppRunner(app_for(hf))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(port))
    tmp.rename(port_file)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
