"""hf backend: new weights into a running model (load_weights, paused) and wrapping a live model
(from_model), as RL on one device needs."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from thor_cli.backends import SamplingParams
from thor_cli.backends.hf import HFBackend
from thor_cli.errors import BackendError

torch = pytest.importorskip("torch")
GREEDY = SamplingParams(max_tokens=12, temperature=0.0)
PROMPTS = [[5, 17, 300, 42], [7, 8, 9], list(range(20, 60, 3))]


@pytest.fixture
def backend(tiny_model_dir: Path) -> Any:
    b = HFBackend(str(tiny_model_dir), max_batch=4)
    yield b
    asyncio.run(b.close())


def _perturbed(state: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + 3.0 * v.float().std().nan_to_num(0.1) * torch.randn(v.shape, generator=gen).to(v.dtype)
            if v.is_floating_point() else v.clone() for k, v in state.items()}


async def _greedy(b: HFBackend) -> list[list[int]]:
    outs = await asyncio.gather(*[b.generate(p, GREEDY) for p in PROMPTS])
    return [o.ids for o in outs]


async def _first_logprobs(b: HFBackend) -> list[float]:
    out = await b.generate(PROMPTS[0], SamplingParams(max_tokens=4, seed=0))
    assert out.logprobs is not None
    return out.logprobs


def test_outputs_change_with_new_weights_and_come_back(backend: HFBackend, tmp_path: Path) -> None:
    original = {k: v.clone() for k, v in backend.model.state_dict().items()}
    noisy = _perturbed(original)
    model_obj, param = backend.model, next(backend.model.parameters())

    async def main() -> None:
        before = await _greedy(backend)
        await backend.load_weights(noisy)
        after = await _greedy(backend)
        assert after != before
        await backend.load_weights(original)
        assert await _greedy(backend) == before
        # a checkpoint folder with the noisy weights gives what the noisy state dict gave
        backend.model.save_pretrained(tmp_path / "orig")
        from transformers import AutoModelForCausalLM

        other = AutoModelForCausalLM.from_pretrained(tmp_path / "orig")
        other.load_state_dict(noisy)
        other.save_pretrained(tmp_path / "noisy")
        await backend.load_weights(str(tmp_path / "noisy"))
        assert await _greedy(backend) == after
        await backend.load_weights(other)  # a module: its state dict
        assert await _greedy(backend) == after
        await backend.load_weights(tmp_path / "orig")
        assert await _greedy(backend) == before

    asyncio.run(main())
    assert backend.model is model_obj and next(backend.model.parameters()) is param  # copied in place


def test_bad_weights_are_refused_and_change_nothing(backend: HFBackend, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in backend.model.state_dict().items()}
    name = next(k for k in state if k.endswith("q_proj.weight"))

    async def main() -> None:
        before = await _greedy(backend)
        lps = await _first_logprobs(backend)
        with pytest.raises(BackendError, match="unknown names"):
            await backend.load_weights({**_perturbed(state), "bogus.weight": torch.zeros(2)})
        with pytest.raises(BackendError, match=f"shape of {name}"):
            await backend.load_weights({**_perturbed(state), name: torch.zeros(3, 3)})
        with pytest.raises(BackendError, match="lacks 1 of"):
            await backend.load_weights({k: v for k, v in _perturbed(state).items() if k != name})
        with pytest.raises(BackendError, match="cannot load weights from"):
            await backend.load_weights(str(tmp_path / "missing"))
        with pytest.raises(BackendError, match="from a int"):
            await backend.load_weights(3)
        assert await _greedy(backend) == before and await _first_logprobs(backend) == lps
        embed = next(k for k in state if k.endswith("embed_tokens.weight"))
        await backend.load_weights({embed: _perturbed(state)[embed]}, strict=False)  # a partial load, asked for
        assert await _first_logprobs(backend) != lps

    asyncio.run(main())


def test_loading_while_requests_are_in_flight(backend: HFBackend) -> None:
    """No forward runs while weights change, every request completes validly, and nothing hangs."""
    original = {k: v.clone() for k, v in backend.model.state_dict().items()}
    noisy = _perturbed(original, seed=1)
    copying = threading.Event()
    overlaps: list[float] = []
    forward = backend._forward

    def watched(*args: Any, **kwargs: Any) -> Any:
        if copying.is_set():
            overlaps.append(time.monotonic())
        return forward(*args, **kwargs)

    backend._forward = watched  # type: ignore[method-assign]

    def hold_paused() -> None:
        with backend.paused():
            copying.set()
            time.sleep(0.02)  # a forward that slipped through would run now
            copying.clear()

    async def main() -> tuple[list[Any], int]:
        jobs = [asyncio.create_task(backend.generate(PROMPTS[i % 3], SamplingParams(max_tokens=300, seed=i)))
                for i in range(8)]
        held_while_running = 0
        for i in range(6):
            await asyncio.sleep(0.01)
            await backend.load_weights(noisy if i % 2 == 0 else original)
            await asyncio.to_thread(hold_paused)
            held_while_running += not all(j.done() for j in jobs)
        return await asyncio.gather(*jobs), held_while_running

    outs, held_while_running = asyncio.run(main())
    assert held_while_running >= 3  # else the test proves nothing
    assert overlaps == []
    for out in outs:
        assert len(out.ids) == 300 or out.finish_reason == "eos"
        assert out.logprobs is not None and len(out.logprobs) == len(out.ids)
        assert all(lp <= 0.0 and lp > float("-inf") for lp in out.logprobs)


def test_from_model_shares_the_live_model(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    reference = HFBackend(str(tiny_model_dir))
    shared = HFBackend.from_model(model, tok, max_batch=4)
    assert shared.model is model and shared.max_context == reference.max_context

    async def main() -> None:
        try:
            before = await _greedy(shared)
            assert before == await _greedy(reference)
            with shared.paused(), torch.no_grad():  # what a trainer's optimizer step does
                for p in model.parameters():
                    p.mul_(1.5)
            changed = await _greedy(shared)
            assert changed != before
            await shared.load_weights(model)  # its own model: a barrier, copies nothing
            assert await _greedy(shared) == changed
        finally:
            await shared.close()
            await reference.close()

    asyncio.run(main())
