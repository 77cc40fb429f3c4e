"""The Backend contract (base.py), checked on every backend that runs here.

``hf`` runs the tiny model in-process; ``openai`` talks over real HTTP to a local server that
serves the same tiny model with vLLM's /v1/completions dialect (tests/backends/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from thor_cli.backends import Backend, SamplingParams

BACKENDS = ["hf", "openai"]


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest, hf_tiny: Any, tiny_model_dir: Path,
                 servers: Any) -> Callable[[], Any]:
    @asynccontextmanager
    async def make() -> AsyncIterator[Backend]:
        if request.param == "hf":
            yield hf_tiny
            return
        from thor_cli.backends.openai import OpenAIBackend

        async with servers.serve(servers.completions_app(hf_tiny)) as url:
            backend = OpenAIBackend(str(tiny_model_dir), base_url=url, concurrency=8)
            try:
                yield backend
            finally:
                await backend.close()

    return make


def run(make: Callable[[], Any], body: Callable[[Backend], Any]) -> Any:
    async def main() -> Any:
        async with make() as backend:
            assert isinstance(backend, Backend)
            return await body(backend)

    return asyncio.run(main())


@pytest.fixture(scope="session")
def eos_seed(hf_tiny: Any, chat_prompt: list[int]) -> int:
    """A seed whose sample of the random tiny model reaches EOS within 64 tokens."""
    async def search() -> int:
        for wave in range(0, 128, 16):
            seeds = range(wave, wave + 16)
            outs = await asyncio.gather(*[hf_tiny.generate(chat_prompt, SamplingParams(max_tokens=64, seed=s))
                                          for s in seeds])
            for seed, out in zip(seeds, outs, strict=True):
                if out.finish_reason == "eos":
                    return seed
        raise AssertionError("no seed in 0..127 reaches EOS within 64 tokens on the tiny model")

    return asyncio.run(search())


def test_length_no_echo_and_logprobs(make_backend: Any, chat_prompt: list[int]) -> None:
    async def body(b: Backend) -> None:
        out = await b.generate(chat_prompt, SamplingParams(max_tokens=5, seed=7, temperature=0.9))
        if out.finish_reason == "length":
            assert len(out.ids) == 5  # the prompt (16 ids) is not echoed
        assert 1 <= len(out.ids) <= 5
        assert out.logprobs is not None and len(out.logprobs) == len(out.ids)
        assert all(lp <= 0.0 for lp in out.logprobs)
        assert all(0 <= t < len(b.tokenizer) for t in out.ids)
        assert b.max_context == 2048

    run(make_backend, body)


def test_same_seed_same_ids_other_seed_differs(make_backend: Any, chat_prompt: list[int]) -> None:
    async def body(b: Backend) -> None:
        a1 = await b.generate(chat_prompt, SamplingParams(max_tokens=12, seed=11))
        a2 = await b.generate(chat_prompt, SamplingParams(max_tokens=12, seed=11))
        c = await b.generate(chat_prompt, SamplingParams(max_tokens=12, seed=12))
        assert a1.ids == a2.ids and a1.logprobs == a2.logprobs
        assert c.ids != a1.ids

    run(make_backend, body)


def test_greedy_and_top_k_1_agree(make_backend: Any, chat_prompt: list[int]) -> None:
    async def body(b: Backend) -> None:
        g = await b.generate(chat_prompt, SamplingParams(max_tokens=8, temperature=0.0))
        k1 = await b.generate(chat_prompt, SamplingParams(max_tokens=8, temperature=1.3, top_k=1, seed=3))
        p0 = await b.generate(chat_prompt, SamplingParams(max_tokens=8, temperature=1.3, top_p=1e-6, seed=4))
        assert g.ids == k1.ids == p0.ids
        assert k1.logprobs is not None and all(abs(lp) < 1e-5 for lp in k1.logprobs)  # one token left

    run(make_backend, body)


def test_eos_is_kept_and_reported(make_backend: Any, chat_prompt: list[int], eos_seed: int) -> None:
    async def body(b: Backend) -> None:
        out = await b.generate(chat_prompt, SamplingParams(max_tokens=64, seed=eos_seed))
        assert out.finish_reason == "eos"
        assert out.ids[-1] == b.tokenizer.eos_token_id
        assert b.tokenizer.eos_token_id not in out.ids[:-1]
        assert out.logprobs is not None and len(out.logprobs) == len(out.ids)

    run(make_backend, body)


def _stop_case(tok: Any, ids: list[int]) -> tuple[str, int]:
    """A stop string taken from the middle of a sample, and how many ids complete it."""
    for start in range(6, len(ids) - 2):
        stop = tok.decode(ids[start:start + 2])
        if len(stop.strip()) >= 2 and "\ufffd" not in stop and "<|" not in stop:
            k = next(k for k in range(1, len(ids) + 1) if stop in tok.decode(ids[:k]))
            return stop, k
    raise AssertionError("no usable stop string in the sample")


def test_stop_string_ends_with_the_completing_token(make_backend: Any, chat_prompt: list[int]) -> None:
    async def body(b: Backend) -> None:
        free = await b.generate(chat_prompt, SamplingParams(max_tokens=30, seed=5, temperature=0.8))
        stop, k = _stop_case(b.tokenizer, free.ids)
        out = await b.generate(chat_prompt, SamplingParams(max_tokens=30, seed=5, temperature=0.8,
                                                           stop=("never-in-this-text", stop)))
        assert out.finish_reason == "stop" and out.stop == stop
        assert out.ids == free.ids[:k]
        assert stop in b.tokenizer.decode(out.ids) and stop not in b.tokenizer.decode(out.ids[:-1])
        assert out.logprobs == free.logprobs[:k]

    run(make_backend, body)


def test_many_concurrent_calls_all_return(make_backend: Any, chat_prompt: list[int]) -> None:
    async def body(b: Backend) -> None:
        params = [SamplingParams(max_tokens=1 + i % 7, seed=100 + i, temperature=0.5 + (i % 3) * 0.4,
                                 top_p=0.9 if i % 2 else 1.0, top_k=20 if i % 5 == 0 else -1) for i in range(24)]
        prompts = [chat_prompt[: 4 + i % 12] for i in range(24)]
        outs = await asyncio.gather(*[b.generate(p, sp) for p, sp in zip(prompts, params, strict=True)])
        for sp, out in zip(params, outs, strict=True):
            assert out.finish_reason in ("length", "eos")
            assert len(out.ids) == sp.max_tokens or out.finish_reason == "eos"
            assert out.logprobs is not None and len(out.logprobs) == len(out.ids)
        again = await asyncio.gather(*[b.generate(p, sp) for p, sp in zip(prompts, params, strict=True)])
        assert [o.ids for o in again] == [o.ids for o in outs]

    run(make_backend, body)
