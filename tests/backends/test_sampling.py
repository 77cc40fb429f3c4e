"""sampling.py: the hf backend's sampler, moved out of hf.py, and the trainer's token_logprobs.

``_legacy_sample`` below is hf.py's ``_sample``/``_top_k_top_p`` as they were before the move
(main at 0493519), kept only as the reference the moved code must reproduce bit for bit.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from thor_cli.backends import SamplingParams
from thor_cli.backends.hf import HFBackend
from thor_cli.backends.sampling import process_logits, sample, token_logprobs, top_k_top_p

torch = pytest.importorskip("torch")


def _legacy_top_k_top_p(logits: Any, top_k: list[int], top_p: list[float]) -> Any:
    vocab = logits.shape[-1]
    ordered, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)[None, :]
    k = torch.tensor([k if 0 < k < vocab else vocab for k in top_k], device=logits.device)
    drop = ranks >= k[:, None]
    ordered = ordered.masked_fill(drop, float("-inf"))
    p = torch.tensor(top_p, device=logits.device, dtype=logits.dtype)
    probs = ordered.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs
    drop = drop | (before >= p[:, None])
    drop[:, 0] = False
    ordered = ordered.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, ordered)


def _legacy_sample(logits: Any, params: list[tuple[float, int, float]], gens: list[Any]) -> tuple[list[int], list[float]]:
    logits = logits.float()
    temps = [t for t, _, _ in params]
    greedy = [t <= 0 for t in temps]
    scale = torch.tensor([t if t > 0 else 1.0 for t in temps], device=logits.device)
    scaled = logits / scale[:, None]
    filtered = [i for i, (_, k, p) in enumerate(params) if not greedy[i] and (0 < k < logits.shape[-1] or p < 1.0)]
    if filtered:
        scaled[filtered] = _legacy_top_k_top_p(scaled[filtered], [params[i][1] for i in filtered],
                                               [params[i][2] for i in filtered])
    logp = torch.log_softmax(scaled, dim=-1)
    if all(greedy):
        chosen = logp.argmax(dim=-1)
    else:
        u = torch.tensor([0.0 if g else float(torch.rand((), generator=gen)) for g, gen in zip(greedy, gens, strict=True)])
        cdf = logp.exp().cumsum(dim=-1)
        chosen = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1)
        chosen = chosen.clamp(max=logits.shape[-1] - 1)
        if any(greedy):
            chosen = torch.where(torch.tensor(greedy), logp.argmax(dim=-1), chosen)
    picked = logp.gather(1, chosen[:, None]).squeeze(1)
    if bool(torch.isinf(picked).any()):
        chosen = torch.where(torch.isinf(picked), logp.argmax(dim=-1), chosen)
        picked = logp.gather(1, chosen[:, None]).squeeze(1)
    return chosen.tolist(), picked.tolist()


PARAM_CHOICES = [(0.0, -1, 1.0), (1.0, -1, 1.0), (0.7, 20, 0.9), (0.6, -1, 0.95), (1.3, 5, 1.0), (0.9, 3, 0.5),
                 (0.0, 20, 0.9), (2.0, 1000, 1.0)]


@pytest.mark.parametrize("case", range(12))
def test_sample_reproduces_the_old_hf_sampler_bit_for_bit(case: int) -> None:
    rnd = random.Random(case)
    n = rnd.randrange(1, 9)
    if case == 0:
        params = [PARAM_CHOICES[0]] * n  # all greedy
    elif case == 1:
        params = [PARAM_CHOICES[1]] * n  # no filtering at all
    else:
        params = [rnd.choice(PARAM_CHOICES) for _ in range(n)]
    logits = torch.randn(n, 257, generator=torch.Generator().manual_seed(case)) * rnd.choice([0.5, 3.0, 10.0])
    for step in range(5):  # several draws from the same generators, as decoding does
        seeds = [1000 * case + i for i in range(n)]
        old = _legacy_sample(logits.clone(), params, [torch.Generator().manual_seed(s + step) for s in seeds])
        new = sample(logits.clone(), [p[0] for p in params], [p[1] for p in params], [p[2] for p in params],
                     [torch.Generator().manual_seed(s + step) for s in seeds])
        assert new == old


def test_top_k_top_p_masks() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]]))
    out = top_k_top_p(logits.clone(), [-1, 2], [0.75, 1.0])
    kept = torch.isfinite(out)
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.equal(out[kept], logits[kept])


def test_process_logits_per_row_equals_one_row_at_a_time() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    temps, ks, ps = [0.0, 0.7, 1.0, 1.5], [-1, 10, -1, 3], [1.0, 0.9, 0.8, 1.0]
    together = process_logits(logits, temps, ks, ps)
    for i in range(4):
        alone = process_logits(logits[i:i + 1], temps[i], ks[i], ps[i])
        assert torch.equal(together[i:i + 1], alone)
    # greedy: the unscaled, unfiltered distribution
    assert torch.allclose(together[0], torch.log_softmax(logits[0], -1))
    with pytest.raises(ValueError, match="top_k: 2 values for 4 rows"):
        process_logits(logits, 1.0, [1, 2], 1.0)


def _trainer_logprobs(model: Any, prompt: list[int], ids: list[int], t: float, k: int, p: float,
                      chunk_elements: int | None = None) -> Any:
    """What a trainer does: one forward over prompt + completion, logits shifted by one."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[:, len(prompt) - 1:-1]
    kwargs = {} if chunk_elements is None else {"chunk_elements": chunk_elements}
    return token_logprobs(logits, torch.tensor([ids]), t, k, p, **kwargs)[0]


@pytest.mark.parametrize("t,k,p", [(0.7, 20, 0.9), (1.0, -1, 1.0), (0.0, -1, 1.0)])
def test_trainer_token_logprobs_equal_the_rollouts(hf_tiny: HFBackend, chat_prompt: list[int],
                                                   t: float, k: int, p: float) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*[hf_tiny.generate(chat_prompt[: 8 + 3 * i], SamplingParams(
            max_tokens=24, temperature=t, top_k=k, top_p=p, seed=i)) for i in range(4)])

    for i, out in enumerate(asyncio.run(main())):
        prompt = chat_prompt[: 8 + 3 * i]
        got = _trainer_logprobs(hf_tiny.model, prompt, out.ids, t, k, p)
        assert got.tolist() == pytest.approx(out.logprobs, abs=1e-5)
        chunked = _trainer_logprobs(hf_tiny.model, prompt, out.ids, t, k, p, chunk_elements=3 * hf_tiny.vocab_size)
        assert torch.allclose(chunked, got, atol=1e-6)


def test_token_logprobs_is_differentiable_and_checks_shapes() -> None:
    logits = torch.randn(2, 6, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    ids = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(4))
    ids[1] = process_logits(logits[1].detach(), 0.8, 5, 0.9).argmax(-1)  # in the kept set
    out = token_logprobs(logits, ids, [1.0, 0.8], [-1, 5], [1.0, 0.9], chunk_elements=80)
    assert out.shape == (2, 6) and bool(torch.isfinite(out).all())
    out.sum().backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    ref = torch.log_softmax(logits.detach()[0], -1).gather(1, ids[0][:, None]).squeeze(1)
    assert torch.allclose(out[0].detach(), ref, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        token_logprobs(logits, ids[:, :3])
