"""The `hf` backend's prefix cache: a row that stops on a stop string (a tool call) parks its KV
cache, and the prompt that continues it (its context plus the cell's output) prefills only what
is new. Correct iff every log-prob still equals a plain forward over the whole sequence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hf_reference import reference_logprobs

from thor_cli.backends import SamplingParams
from thor_cli.backends.base import Completion
from thor_cli.backends.hf import HFBackend
from thor_cli.errors import BackendError


@pytest.fixture()
def backend(tiny_model_dir: Path) -> Any:
    b = HFBackend(str(tiny_model_dir), max_batch=8)
    yield b
    asyncio.run(b.close())


def _stopped(backend: HFBackend, prompt: list[int], seed: int) -> Completion:
    """A completion of ``prompt`` that ends on a stop string (one taken from its own text)."""
    for s in range(seed, seed + 20):
        free = asyncio.run(backend.generate(prompt, SamplingParams(max_tokens=10, seed=s, temperature=1.0)))
        stop = backend.tokenizer.decode(free.ids[-3:])
        if free.finish_reason != "length" or not stop:
            continue
        out = asyncio.run(backend.generate(prompt, SamplingParams(max_tokens=20, seed=s, temperature=1.0,
                                                                  stop=(stop,))))
        if out.finish_reason == "stop":
            return out
    raise AssertionError("no seed gave a completion that ends on a stop string")


def _delta(backend: HFBackend, before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in backend.prefix_stats.items()}


def test_a_continuation_prefills_only_what_is_new(backend: HFBackend, tiny_model_dir: Path,
                                                  chat_prompt: list[int]) -> None:
    first = _stopped(backend, chat_prompt, seed=1)
    assert backend.prefix_stats["parked"] == 1
    cont = chat_prompt + first.ids + [11, 12, 13, 14, 15]  # the stop token, then a "cell output"
    cold = chat_prompt[:6] + [21, 22, 23]  # admitted together with it: one reused row, one cold row
    params = SamplingParams(max_tokens=12, seed=3, temperature=0.8)
    before = dict(backend.prefix_stats)

    async def both(b: HFBackend) -> list[Completion]:
        return list(await asyncio.gather(b.generate(cont, params), b.generate(cold, params)))

    warm, other = asyncio.run(both(backend))
    d = _delta(backend, before)
    assert d["reused_tokens"] == len(chat_prompt) + len(first.ids) - 1
    assert d["prefilled_tokens"] == 1 + 5 + len(cold)
    assert warm.logprobs == pytest.approx(reference_logprobs(backend, cont, warm.ids, 0.8), abs=1e-4)
    assert other.logprobs == pytest.approx(reference_logprobs(backend, cold, other.ids, 0.8), abs=1e-4)
    assert backend.prefix_stats["parked"] == 1 or warm.finish_reason == "stop"  # taken whole, so gone
    assert not backend._parked or warm.finish_reason == "stop"

    plain = HFBackend(str(tiny_model_dir), max_batch=8, prefix_cache_mb=0)
    try:
        ref_warm, ref_other = asyncio.run(both(plain))
        assert plain.prefix_stats["reused_tokens"] == 0 and not plain._parked
    finally:
        asyncio.run(plain.close())
    assert (warm.ids, other.ids) == (ref_warm.ids, ref_other.ids)


def test_a_retry_after_backing_off_reuses_the_shared_part(backend: HFBackend, chat_prompt: list[int]) -> None:
    first = _stopped(backend, chat_prompt, seed=5)
    assert len(first.ids) >= 3
    kept = chat_prompt + first.ids[:-2]
    other = next(t for t in range(3, 50) if t != first.ids[-2])
    retry = kept + [other, 7]  # backed off two tokens, then went elsewhere
    params = SamplingParams(max_tokens=8, seed=9, temperature=0.8)
    before = dict(backend.prefix_stats)
    out = asyncio.run(backend.generate(retry, params))
    assert _delta(backend, before)["reused_tokens"] == len(kept)
    assert out.logprobs == pytest.approx(reference_logprobs(backend, retry, out.ids, 0.8), abs=1e-4)
    # only part of the entry was used: it stays for the prompt that extends it whole
    whole = chat_prompt + first.ids + [31, 32]
    before = dict(backend.prefix_stats)
    out = asyncio.run(backend.generate(whole, params))
    assert _delta(backend, before)["reused_tokens"] == len(chat_prompt) + len(first.ids) - 1
    assert out.logprobs == pytest.approx(reference_logprobs(backend, whole, out.ids, 0.8), abs=1e-4)


def test_identical_prompts_admitted_together_are_prefilled_once(backend: HFBackend, chat_prompt: list[int]) -> None:
    before = dict(backend.prefix_stats)

    async def group() -> list[Completion]:
        return list(await asyncio.gather(*[backend.generate(chat_prompt, SamplingParams(
            max_tokens=10, seed=s, temperature=1.0)) for s in range(4)]))

    outs = asyncio.run(group())
    d = _delta(backend, before)
    assert d["prompt_tokens"] == 4 * len(chat_prompt)
    assert d["prefilled_tokens"] == len(chat_prompt)
    assert len({tuple(o.ids) for o in outs}) > 1  # each row samples with its own generator
    for o in outs:
        assert o.logprobs == pytest.approx(reference_logprobs(backend, chat_prompt, o.ids, 1.0), abs=1e-4)


def test_changing_weights_drops_parked_caches(backend: HFBackend, chat_prompt: list[int]) -> None:
    first = _stopped(backend, chat_prompt, seed=1)
    assert backend._parked
    with backend.paused():  # what a trainer holds around its optimizer step
        pass
    assert not backend._parked
    before = dict(backend.prefix_stats)
    asyncio.run(backend.generate(chat_prompt + first.ids + [5], SamplingParams(max_tokens=2, seed=0)))
    assert _delta(backend, before)["reused_tokens"] == 0


def test_the_budget_evicts_the_oldest(tiny_model_dir: Path, chat_prompt: list[int]) -> None:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(tiny_model_dir)
    per_token = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    room = len(chat_prompt) + 30  # one parked entry fits, two do not
    b = HFBackend(str(tiny_model_dir), max_batch=8, prefix_cache_mb=per_token * room / (1 << 20))
    try:
        a = _stopped(b, chat_prompt, seed=1)
        second = [40, 41, *chat_prompt[1:]]  # shares no prefix with the first
        z = _stopped(b, second, seed=2)
        assert b.prefix_stats["evicted"] == 1 and len(b._parked) == 1
        before = dict(b.prefix_stats)
        asyncio.run(b.generate(chat_prompt + a.ids + [5], SamplingParams(max_tokens=2, seed=0)))
        assert _delta(b, before)["reused_tokens"] == 0  # evicted
        asyncio.run(b.generate(second + z.ids + [5], SamplingParams(max_tokens=2, seed=0)))
        assert _delta(b, before)["reused_tokens"] == len(second) + len(z.ids) - 1
    finally:
        asyncio.run(b.close())


def test_a_bad_budget_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(BackendError, match="prefix_cache_mb"):
        HFBackend(str(tiny_model_dir), prefix_cache_mb="lots")
