"""The `hf` backend's own machinery: KV-cache bookkeeping under continuous batching, per-row
generators, cancellation, rows leaving the batch, input errors and model resolution."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hf_reference import reference_logprobs

from thor_cli.backends import SamplingParams, load_backend
from thor_cli.backends.hf import HFBackend
from thor_cli.errors import BackendError


@pytest.fixture(scope="module")
def small_batch(tiny_model_dir: Path) -> Any:
    """Three slots: admissions, merges and evictions happen all the time."""
    backend = HFBackend(str(tiny_model_dir), max_batch=3)
    yield backend
    asyncio.run(backend.close())


def test_logprobs_match_a_full_forward_under_continuous_batching(small_batch: HFBackend) -> None:
    """Left padding, masks, positions and cache merges/evictions are right iff every sampled
    token's logprob equals the one a plain forward over prompt + completion gives."""
    rnd = random.Random(0)
    vocab = small_batch.vocab_size
    cases = [([rnd.randrange(3, vocab) for _ in range(rnd.randrange(1, 30))], rnd.randrange(1, 25), rnd.random() * 0.03)
             for _ in range(14)]

    async def one(i: int, prompt: list[int], max_tokens: int, delay: float) -> Any:
        await asyncio.sleep(delay)  # arrive while others are mid-generation
        return await small_batch.generate(prompt, SamplingParams(max_tokens=max_tokens, seed=i, temperature=0.8))

    async def main() -> list[Any]:
        return await asyncio.gather(*[one(i, *c) for i, c in enumerate(cases)])

    outs = asyncio.run(main())
    for (prompt, max_tokens, _), out in zip(cases, outs, strict=True):
        assert len(out.ids) == max_tokens or out.finish_reason == "eos"
        ref = reference_logprobs(small_batch, prompt, out.ids, 0.8)
        assert out.logprobs == pytest.approx(ref, abs=1e-4)


def test_a_row_does_not_depend_on_its_batch(hf_tiny: HFBackend, chat_prompt: list[int]) -> None:
    params = SamplingParams(max_tokens=24, seed=42, temperature=1.0, top_p=0.95)

    async def main() -> tuple[Any, Any]:
        alone = await hf_tiny.generate(chat_prompt, params)
        others = [hf_tiny.generate(chat_prompt[: 5 + i], SamplingParams(max_tokens=3 + 4 * i, seed=i, temperature=0.7))
                  for i in range(6)]
        *_, crowded = await asyncio.gather(*others, hf_tiny.generate(chat_prompt, params))
        return alone, crowded

    alone, crowded = asyncio.run(main())
    assert crowded.ids == alone.ids
    assert crowded.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_a_runaway_row_does_not_hold_others_hostage(small_batch: HFBackend, chat_prompt: list[int]) -> None:
    async def main() -> None:
        long = asyncio.create_task(small_batch.generate(chat_prompt, SamplingParams(max_tokens=400, seed=1)))
        await asyncio.sleep(0)
        shorts = [asyncio.create_task(small_batch.generate(chat_prompt, SamplingParams(max_tokens=2, seed=10 + i)))
                  for i in range(8)]  # 8 requests through the 2 slots the long one leaves free
        await asyncio.wait(shorts)
        assert not long.done()  # every short one finished while the long one was still running
        out = await long
        assert len(out.ids) == 400 or out.finish_reason == "eos"

    asyncio.run(main())


def test_cancelled_request_leaves_the_batch(small_batch: HFBackend, chat_prompt: list[int]) -> None:
    async def main() -> None:
        doomed = asyncio.create_task(small_batch.generate(chat_prompt, SamplingParams(max_tokens=1000, seed=2)))
        await asyncio.sleep(0.05)
        doomed.cancel()
        outs = await asyncio.gather(*[small_batch.generate(chat_prompt, SamplingParams(max_tokens=4, seed=i))
                                      for i in range(5)])
        assert all(len(o.ids) == 4 or o.finish_reason == "eos" for o in outs)
        with pytest.raises(asyncio.CancelledError):
            await doomed

    asyncio.run(main())


def test_input_errors_name_the_problem(hf_tiny: HFBackend) -> None:
    async def main() -> None:
        with pytest.raises(BackendError, match="context"):
            await hf_tiny.generate([5] * hf_tiny.max_context, SamplingParams(max_tokens=4))
        with pytest.raises(BackendError, match="empty prompt"):
            await hf_tiny.generate([], SamplingParams(max_tokens=4))
        with pytest.raises(BackendError, match="outside the vocabulary"):
            await hf_tiny.generate([hf_tiny.vocab_size + 5], SamplingParams(max_tokens=4))

    asyncio.run(main())


def test_completion_is_clamped_to_the_context(tiny_model_dir: Path) -> None:
    from thor_cli.models.tiny import build_tiny_model

    short = build_tiny_model(tiny_model_dir.parent / "short-context", max_position_embeddings=40)
    backend = HFBackend(str(short))

    async def main() -> Any:
        try:
            return await backend.generate(list(range(3, 33)), SamplingParams(max_tokens=100, seed=0))
        finally:
            await backend.close()

    out = asyncio.run(main())
    assert backend.max_context == 40
    assert len(out.ids) == 10 or out.finish_reason == "eos"


def test_load_backend_by_cached_name(tiny_model_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-cached")
    monkeypatch.setenv("THOR_HOME", str(home))
    backend = load_backend("hf", "tiny-cached", max_batch=2)
    assert isinstance(backend, HFBackend) and backend.max_batch == 2
    with pytest.raises(BackendError, match="unknown options"):
        load_backend("hf", "tiny-cached", bogus=1)


def test_a_failing_step_fails_its_requests_and_the_backend_recovers(small_batch: HFBackend,
                                                                     chat_prompt: list[int],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory (simulated)")

    async def main() -> None:
        monkeypatch.setattr(small_batch, "_forward", broken)
        with pytest.raises(BackendError, match="simulated"):
            await small_batch.generate(chat_prompt, SamplingParams(max_tokens=3, seed=0))
        monkeypatch.undo()
        out = await small_batch.generate(chat_prompt, SamplingParams(max_tokens=3, seed=0))
        assert len(out.ids) == 3 or out.finish_reason == "eos"

    asyncio.run(main())


def test_the_batch_storage_reuses_slots_trims_and_grows_without_changing_a_number(tiny_model_dir: Path) -> None:
    """The running batch lives in storage allocated ahead (rows are slots, columns grow in
    steps): a finished row's slot is taken by the next request, leading columns no row needs are
    trimmed, a request longer than the batch widens it on the left, and the storage grows and is
    compacted. Every path changes only where a row's numbers are kept, so every sampled token's
    logprob must still equal a plain forward's."""
    backend = HFBackend(str(tiny_model_dir), max_batch=4, prefix_cache_mb=0)
    rnd = random.Random(1)
    vocab = backend.vocab_size
    # long prompts after short ones (widening), long generations (column growth and trimming),
    # more requests than slots arriving over time (slot reuse, compaction as the queue drains)
    cases = [([rnd.randrange(3, vocab) for _ in range(rnd.choice([3, 10, 90, 140]))], rnd.choice([5, 40, 150]),
              rnd.random() * 0.3) for _ in range(16)]

    async def one(i: int, prompt: list[int], max_tokens: int, delay: float) -> Any:
        await asyncio.sleep(delay)
        return await backend.generate(prompt, SamplingParams(max_tokens=max_tokens, seed=i, temperature=0.9))

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(*[one(i, *c) for i, c in enumerate(cases)])
        finally:
            await backend.close()

    outs = asyncio.run(main())
    stats = backend.storage_stats
    assert min(stats["regrown"], stats["widened"], stats["trimmed"], stats["compacted"], stats["slots_reused"]) > 0, stats
    for (prompt, max_tokens, _), out in zip(cases, outs, strict=True):
        assert len(out.ids) == max_tokens or out.finish_reason == "eos"
        ref = reference_logprobs(backend, prompt, out.ids, 0.9)
        assert out.logprobs == pytest.approx(ref, abs=1e-4)
