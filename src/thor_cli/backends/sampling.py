"""Temperature, top-k, top-p, sampling and token log-probs: the one place they are computed.

The ``hf`` backend samples with these functions and the trainer scores completions with
``token_logprobs``, so that the log-probs a rollout records and the ones the trainer recomputes
come from the same code (same order of operations, same masking, same float32 arithmetic).

The processed distribution of a row (what ``process_logits`` returns, as log-probs):

1. ``logits.float() / temperature``;
2. top-k: tokens ranked below the k-th are removed (``top_k <= 0`` or ``>= vocab``: off);
3. top-p: tokens are removed once the mass of the better-ranked tokens is ``>= top_p``
   (``top_p >= 1``: off); the best token always survives;
4. ``log_softmax``; removed tokens get ``-inf``.

Greedy convention: a row with ``temperature <= 0`` is greedy. It skips steps 1-3 (its
log-probs are those of the *unscaled*, unfiltered distribution, since the processed one would put
all mass on one token and give 0 everywhere) and ``sample`` takes its argmax. ``token_logprobs``
follows the same convention, so a trainer that scores greedy rollouts sees the rollout's numbers.

A token outside a row's top-k/top-p set has log-prob ``-inf``. The trainer, recomputing logits
in another batch shape, can land a token sampled right at the top-p edge just outside the set:
``token_logprobs`` then returns ``-inf`` for it, which a loss must mask or clamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# How many logits (rows x vocab) token_logprobs processes at once: 2**25 float32 = 128 MiB, so a
# 150k vocabulary goes about 220 positions a chunk.
CHUNK_ELEMENTS = 1 << 25


def _per_row(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} rows")
        return list(value)
    return [value] * n


def top_k_top_p(logits: Any, top_k: Sequence[int], top_p: Sequence[float]) -> Any:
    """Mask (to -inf) what each row's top-k and top-p exclude; at least one token survives.

    ``logits``: (N, V) float; one ``top_k``/``top_p`` per row. Differentiable in the kept logits.
    """
    import torch

    vocab = logits.shape[-1]
    ordered, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)[None, :]
    k = torch.tensor([k if 0 < k < vocab else vocab for k in top_k], device=logits.device)
    drop = ranks >= k[:, None]
    ordered = ordered.masked_fill(drop, float("-inf"))
    p = torch.tensor(list(top_p), device=logits.device, dtype=logits.dtype)
    probs = ordered.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the better-ranked tokens
    drop = drop | (before >= p[:, None])
    drop[:, 0] = False
    ordered = ordered.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter(-1, order, ordered)


def process_logits(logits: Any, temperature: float | Sequence[float], top_k: int | Sequence[int] = -1,
                   top_p: float | Sequence[float] = 1.0) -> Any:
    """(N, V) logits -> (N, V) float32 log-probs of the processed distribution (module docstring).

    Each parameter is one value for all rows or a sequence with one value per row.
    """
    import torch

    n, vocab = logits.shape[0], logits.shape[-1]
    temps = _per_row(temperature, n, "temperature")
    ks = _per_row(top_k, n, "top_k")
    ps = _per_row(top_p, n, "top_p")
    logits = logits.float()
    greedy = [t <= 0 for t in temps]
    scale = torch.tensor([t if t > 0 else 1.0 for t in temps], device=logits.device)
    scaled = logits / scale[:, None]
    filtered = [i for i in range(n) if not greedy[i] and (0 < ks[i] < vocab or ps[i] < 1.0)]
    if len(filtered) == n:
        scaled = top_k_top_p(scaled, ks, ps)
    elif filtered:
        rows = torch.tensor(filtered, device=logits.device)
        masked = top_k_top_p(scaled[rows], [ks[i] for i in filtered], [ps[i] for i in filtered])
        scaled = scaled.index_put((rows,), masked)
    return torch.log_softmax(scaled, dim=-1)


def sample(logits: Any, temperature: Sequence[float], top_k: Sequence[int], top_p: Sequence[float],
           generators: Sequence[Any]) -> tuple[list[int], list[float]]:
    """Draw one token per row of (N, V) ``logits``; return the ids and their processed log-probs.

    Each sampled row takes one uniform draw from its own CPU ``torch.Generator`` (so a seed means
    the same thing on every device and in every batch) and inverts it through the row's CDF.
    Greedy rows (temperature <= 0) take the argmax and draw nothing.
    """
    import torch

    logp = process_logits(logits, temperature, top_k, top_p)
    greedy = [t <= 0 for t in temperature]
    if all(greedy):
        chosen = logp.argmax(dim=-1)
    else:
        u = torch.tensor([0.0 if g else float(torch.rand((), generator=gen))
                          for g, gen in zip(greedy, generators, strict=True)], device=logp.device)
        cdf = logp.exp().cumsum(dim=-1)
        chosen = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1)
        chosen = chosen.clamp(max=logp.shape[-1] - 1)
        if any(greedy):
            chosen = torch.where(torch.tensor(greedy, device=logp.device), logp.argmax(dim=-1), chosen)
    picked = logp.gather(1, chosen[:, None]).squeeze(1)
    if bool(torch.isinf(picked).any()):  # a float edge landed on a masked token: take the mode
        chosen = torch.where(torch.isinf(picked), logp.argmax(dim=-1), chosen)
        picked = logp.gather(1, chosen[:, None]).squeeze(1)
    return chosen.tolist(), picked.tolist()


def token_logprobs(logits: Any, ids: Any, temperature: float | Sequence[float] = 1.0,
                   top_k: int | Sequence[int] = -1, top_p: float | Sequence[float] = 1.0,
                   chunk_elements: int = CHUNK_ELEMENTS) -> Any:
    """Log-prob of ``ids`` (B, T) under the processed distribution of ``logits`` (B, T, V) -> (B, T).

    For the trainer: ``logits[:, t]`` must be the logits that predicted ``ids[:, t]`` (that is, a
    forward over prompt + completion, shifted by one). Parameters are one value, or one per
    sequence (B). The result is float32 and differentiable in ``logits``.

    Memory: positions are processed ``chunk_elements // V`` at a time, so the float32 copies
    never exceed one chunk. Without top-k/top-p (and for greedy rows) it is a selective
    log-softmax, ``logit[id] / T - logsumexp(logits / T)``, which never builds the (B, T, V)
    log-softmax; with top-k/top-p each chunk goes through ``process_logits`` (the sampler's code).
    Under autograd each chunk keeps what its backward needs (about one float32 copy of its
    logits); run it under ``torch.no_grad()`` for old/reference log-probs.
    """
    import torch

    b, t, vocab = logits.shape
    if tuple(ids.shape) != (b, t):
        raise ValueError(f"ids of shape {tuple(ids.shape)} for logits of shape {tuple(logits.shape)}")
    temps = _per_row(temperature, b, "temperature")
    ks = _per_row(top_k, b, "top_k")
    ps = _per_row(top_p, b, "top_p")
    step = max(1, chunk_elements // max(1, vocab))
    ids = ids.to(logits.device)
    rows_out = []
    for r in range(b):
        filtered = temps[r] > 0 and (0 < ks[r] < vocab or ps[r] < 1.0)
        scale = temps[r] if temps[r] > 0 else 1.0
        parts = []
        for s in range(0, t, step):
            chunk = logits[r, s:s + step]
            target = ids[r, s:s + step]
            if filtered:
                logp = process_logits(chunk, temps[r], ks[r], ps[r])
                parts.append(logp.gather(-1, target[:, None]).squeeze(-1))
            else:
                scaled = chunk.float() / scale
                picked = scaled.gather(-1, target[:, None]).squeeze(-1)
                parts.append(picked - torch.logsumexp(scaled, dim=-1))
        rows_out.append(torch.cat(parts) if parts else logits.new_zeros((0,), dtype=torch.float32))
    return torch.stack(rows_out)
