"""A stand-in for a vLLM OpenAI server, for thor rl's tests of trainer ranks that share one
generation server: the routes thor's ``vllm-server`` backend uses, in vLLM's dialect, on thor's
``hf`` backend and the test's tiny model (vLLM itself needs .venv-vllm and SmolLM2; that tier is
test_rl_vllm.py, ``-m vllm``).

    python vllm_standin.py MODEL_DIR PORT_FILE     # serves on a free port, writes it to PORT_FILE

Routes: ``GET /v1/models``; ``POST /v1/completions`` (tests/backends/openai_app.py's: token-id
prompts, ``return_token_ids``, the processed log-probs, ``stop_reason``); ``POST /collective_rpc`` with
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backends"))
from openai_app import completions_app  # noqa: E402 -- vLLM's /v1/completions on an HFBackend

from thor_cli.backends.hf import HFBackend  # noqa: E402


def app_for(hf: HFBackend) -> web.Application:
    seen: list[dict[str, Any]] = []  # the completion requests served
    stats = {"reloads": 0, "prefix_resets": 0}

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "standin", "max_model_len": hf.max_context}]})

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
        return web.json_response({"completions": len(seen), **stats})

    app = completions_app(hf, seen=seen)
    app.router.add_get("/v1/models", models)
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
