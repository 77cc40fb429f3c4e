"""The ``vllm-server`` backend without vLLM: which weight-sync path it picks, how engine options
become vLLM's CLI flags, what it sends a server to reload weights (a fake server that records
the requests), TRL's documented client calls for the NCCL path (TRL's ``VLLMClient`` replaced by
a recorder: the NCCL transfer itself needs a GPU and is not run here), and the errors of a
server that cannot start. The real server runs in the vLLM tier (tests/train/rl/test_rl_vllm.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from thor_cli.backends import SamplingParams, load_backend
from thor_cli.backends.vllm_server import engine_flags, pick_weight_sync
from thor_cli.errors import BackendError


def test_the_sync_path_follows_the_trainers_device() -> None:
    assert pick_weight_sync("auto", cuda=False) == "reload"
    assert pick_weight_sync("auto", cuda=True) == "nccl"
    assert pick_weight_sync("reload", cuda=True) == "reload"
    assert pick_weight_sync("none", cuda=False) == "none"
    with pytest.raises(BackendError, match="needs a CUDA device") as e:
        pick_weight_sync("nccl", cuda=False)
    assert "weight_sync=reload" in e.value.hint
    with pytest.raises(BackendError, match="weight_sync='ipc' is unknown"):
        pick_weight_sync("ipc", cuda=False)


def test_engine_options_become_vllm_flags() -> None:
    assert engine_flags({"enforce_eager": True, "max_model_len": 1024, "enable_prefix_caching": False,
                         "seed": None, "weight_transfer_config": {"backend": "nccl"}}) == [
        "--enforce-eager", "--max-model-len", "1024", "--no-enable-prefix-caching",
        "--weight-transfer-config", '{"backend": "nccl"}']


class FakeServer:
    """A vLLM server's routes that the backend uses, in a thread of its own (the backend's start-up
    calls block), recording every control request."""

    def __init__(self, answer_ids: list[int]) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.answer_ids = answer_ids
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "served-policy", "max_model_len": 512}]})

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("/v1/completions", body["model"]))
        return web.json_response({"choices": [{"text": "x", "finish_reason": "length", "stop_reason": None,
                                               "token_ids": self.answer_ids,
                                               "logprobs": {"token_logprobs": [-0.5] * len(self.answer_ids)}}]})

    async def _control(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.calls.append((request.path, json.loads(raw) if raw else None))
        return web.json_response({"results": [None]})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/collective_rpc", self._control)
        app.router.add_post("/reset_prefix_cache", self._control)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer([5, 6, 7]) as server:
        yield server


def test_reload_sync_writes_the_state_and_asks_the_workers_to_reload(fake: FakeServer, tiny_model_dir: Path,
                                                                    tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # weights unlike the checkpoint's
    backend: Any = load_backend("vllm-server", str(tiny_model_dir), base_url=fake.url + "/v1",
                                weight_sync="reload", weights_dir=str(tmp_path / "w"))
    assert backend.served_model == "served-policy" and backend.max_context == 512

    async def main() -> Any:
        try:
            first = await backend.generate([1, 2], SamplingParams(max_tokens=3))
            await backend.load_weights(model)
            return first
        finally:
            await backend.close()

    first = asyncio.run(main())
    assert first.ids == [5, 6, 7] and first.logprobs == [-0.5] * 3
    assert fake.calls == [
        ("/v1/completions", "served-policy"),
        ("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(tmp_path / "w")}}),
        ("/collective_rpc", {"method": "thor_repack_gemms"}),
        ("/reset_prefix_cache", {}),
    ]
    written = load_file(tmp_path / "w" / "model.safetensors")
    state = model.state_dict()
    # every tensor, tied ones once, with the model's values (the perturbed one included)
    assert set(written) <= set(state) and len(written) == len({t.data_ptr() for t in state.values()})
    for name, value in written.items():
        assert torch.equal(value, state[name]), name


class RecordingVLLMClient:
    """Stands in for TRL's ``VLLMClient``: records the documented calls the adapter makes."""

    made: list[RecordingVLLMClient] = []

    def __init__(self, base_url: str) -> None:
        self.base_url, self.calls = base_url, []
        RecordingVLLMClient.made.append(self)

    def init_communicator(self, device: Any) -> None:
        self.calls.append(("init_communicator", str(device)))

    def update_model_params(self, model: Any) -> None:
        self.calls.append(("update_model_params", type(model).__name__))

    def update_named_params(self, metadata: list[Any], named_params: Iterator[Any]) -> None:
        self.calls.append(("update_named_params", [m[0] for m in metadata], [n for n, _ in named_params]))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache",))

    def close_communicator(self) -> None:
        self.calls.append(("close_communicator",))


def test_nccl_sync_makes_trls_documented_calls(fake: FakeServer, tiny_model_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    pytest.importorskip("trl")
    monkeypatch.setattr("trl.generation.vllm_client.VLLMClient", RecordingVLLMClient)
    RecordingVLLMClient.made.clear()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    backend: Any = load_backend("vllm-server", str(tiny_model_dir), base_url=fake.url, weight_sync="reload")
    backend.weight_sync = "nccl"  # what "auto" picks on a GPU machine; there is none here

    async def main() -> None:
        try:
            await backend.load_weights(model)
            await backend.load_weights({"lm_head.weight": model.lm_head.weight.detach()})
        finally:
            await backend.close()

    asyncio.run(main())
    [client] = RecordingVLLMClient.made  # one client and one communicator for the whole run
    assert client.base_url == fake.url
    assert client.calls == [("init_communicator", "cpu"), ("update_model_params", type(model).__name__),
                            ("reset_prefix_cache",), ("update_named_params", ["lm_head.weight"], ["lm_head.weight"]),
                            ("reset_prefix_cache",), ("close_communicator",)]
    assert not [c for c in fake.calls if c[0] == "/collective_rpc"]  # no file reload on this path


def test_a_server_that_cannot_start_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    # an interpreter without vllm: `python -m vllm...` exits at once; the error quotes its log
    with pytest.raises(BackendError, match="the server exited .* while starting") as e:
        load_backend("vllm-server", str(tiny_model_dir), python=sys.executable, weight_sync="reload",
                     startup_timeout=60)
    assert "No module named 'vllm'" in str(e.value)
    with pytest.raises(BackendError, match="does not exist"):
        load_backend("vllm-server", str(tiny_model_dir), python=str(tmp_path / "nope"), weight_sync="reload")


def test_engine_options_with_base_url_are_refused(fake: FakeServer, tiny_model_dir: Path) -> None:
    with pytest.raises(BackendError, match=r"engine options \['enforce_eager'\] given with base_url"):
        load_backend("vllm-server", str(tiny_model_dir), base_url=fake.url, enforce_eager=True)
