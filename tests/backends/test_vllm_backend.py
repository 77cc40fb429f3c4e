"""The `vllm` backend: runs only where vllm and a CUDA GPU are present (never in CI).

Checks the contract on the tiny model: no echo, length, stop strings with the completing token
kept, seeds, logprobs length. Where this ran is stated in the README's backend section.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from thor_cli.backends import SamplingParams, load_backend
from thor_cli.errors import ThorError


def _why_skip() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (optional extra: pip install 'thor-cli[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "vllm needs a CUDA GPU and there is none"
    return None


def test_unknown_engine_options_name_the_closest_field() -> None:
    from thor_cli.backends.vllm import check_engine_options

    fields = {"enforce_eager", "dtype", "kv_cache_memory_bytes", "tensor_parallel_size"}
    check_engine_options(fields, {"enforce_eager": True, "dtype": "float32"})
    with pytest.raises(ThorError, match=r"enforce_eagr \(did you mean enforce_eager\?\), zzz;") as e:
        check_engine_options(fields, {"enforce_eagr": True, "zzz": 1, "dtype": "float32"})
    assert "AsyncEngineArgs" in e.value.hint


def test_backend_options_from_the_command_line() -> None:
    from thor_cli.backends import parse_backend_options

    opts = parse_backend_options(["enforce_eager=true", "dtype=float32", "kv-cache-memory-bytes=536870912",
                                  "tensor_parallel_size=2", "served_model=a=b"])
    assert opts == {"enforce_eager": True, "dtype": "float32", "kv_cache_memory_bytes": 536870912,
                    "tensor_parallel_size": 2, "served_model": "a=b"}
    with pytest.raises(ThorError, match="'dtype' is not KEY=VALUE"):
        parse_backend_options(["dtype"])


def test_vllm_missing_gives_a_clear_error() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(ThorError, match="vllm"):
        load_backend("vllm", "whatever")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")
def test_vllm_contract_on_the_tiny_model(tiny_model_dir: Path) -> None:
    backend = load_backend("vllm", str(tiny_model_dir), gpu_memory_utilization=0.3, enforce_eager=True)
    tok = backend.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                     tokenize=True)["input_ids"]

    async def main() -> None:
        try:
            a = await backend.generate(prompt, SamplingParams(max_tokens=8, seed=3))
            b = await backend.generate(prompt, SamplingParams(max_tokens=8, seed=3))
            assert a.ids == b.ids and len(a.ids) <= 8
            assert a.logprobs is not None and len(a.logprobs) == len(a.ids)
            free = await backend.generate(prompt, SamplingParams(max_tokens=30, seed=5))
            stop = tok.decode(free.ids[8:10])
            if stop.strip() and "\ufffd" not in stop:
                out = await backend.generate(prompt, SamplingParams(max_tokens=30, seed=5, stop=(stop,)))
                assert out.finish_reason == "stop" and out.stop == stop
                assert stop in tok.decode(out.ids) and out.ids == free.ids[: len(out.ids)]
            outs = await asyncio.gather(*[backend.generate(prompt, SamplingParams(max_tokens=4, seed=i))
                                          for i in range(16)])
            assert all(len(o.ids) == 4 or o.finish_reason == "eos" for o in outs)
        finally:
            await backend.close()

    asyncio.run(main())
