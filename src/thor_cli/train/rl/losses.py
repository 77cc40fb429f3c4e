"""Policy-gradient losses on (B, T) tensors: PPO clip with clip-higher and dual-clip, loss
aggregation, a KL penalty, and THOR's NLL term on positive-advantage tokens.

Shapes: ``logp``, ``old_logp``, ``ref_logp`` and ``mask`` are (B, T) over completion tokens;
``mask`` is 1 on tokens the policy sampled and trains on, 0 on prompt, padding, tool output and
critic-written text (thor's ``completion_mask`` with any further exclusions multiplied in).
Advantages are (B,) per sequence or (B, T) per token. Every function returns a scalar loss that
backpropagates into ``logp`` only, and plain-float stats for logging.

Where this departs from the papers and peers, on purpose:
- Log-ratios are zeroed on masked tokens before ``exp``: garbage log-probs on padding can then not
  overflow into NaN gradients (``0 * inf``) on the tokens that count.
- The sequence-mean modes average over rows with at least one active token; verl averages over
  all rows, so a fully masked row (a filtered sample) dilutes the loss there.
- ``approx_kl`` in the stats is the k3 estimate of KL(old || new), ``mean(r - 1 - log r)``, which
  is never negative; verl logs the k1 estimate ``mean(-log r)``.
"""

from __future__ import annotations

from typing import Literal

import torch

from thor_cli.errors import ThorError, UsageError

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
KLEstimator = Literal["k1", "k2", "k3"]
AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
THOR_NLL_WEIGHT = 0.01  # THOR's alpha: loss += 0.01 * positive_nll(...)


def _check(logp: torch.Tensor, mask: torch.Tensor, **others: torch.Tensor | None) -> torch.Tensor:
    if logp.dim() != 2:
        raise ThorError(f"log-probs must be (B, T), got shape {tuple(logp.shape)}", "pad the batch to (B, T)")
    if mask.shape != logp.shape:
        raise ThorError(f"mask shape {tuple(mask.shape)} differs from log-probs {tuple(logp.shape)}",
                        "build the mask from the same padded completions")
    for name, t in others.items():
        if t is not None and t.shape != logp.shape:
            raise ThorError(f"{name} shape {tuple(t.shape)} differs from log-probs {tuple(logp.shape)}",
                            "pass per-token tensors of the same (B, T) shape")
    return mask.to(logp.dtype)


def _per_token(adv: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if adv.dim() == 1 and adv.shape[0] == like.shape[0]:
        return adv.to(like.dtype).unsqueeze(-1).expand_as(like)
    if adv.shape == like.shape:
        return adv.to(like.dtype)
    raise ThorError(f"advantages of shape {tuple(adv.shape)} fit neither (B,) nor (B, T) = {tuple(like.shape)}",
                    "pass one advantage per sequence or one per token")


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: AggMode = "token-mean", *,
              global_tokens: float | None = None, world_size: int = 1) -> torch.Tensor:
    """Reduce per-token ``values`` (B, T) over the active tokens of ``mask`` to a scalar.

    - ``token-mean``: sum over active tokens / their count (DAPO, THOR). For data-parallel
      training, pass ``global_tokens`` (active tokens summed over all ranks of this optimizer
      step) and ``world_size``: each rank's loss is then ``sum * world_size / global_tokens``, so
      that the gradient average over ranks is the global token mean.
    - ``seq-mean-token-mean``: each row's token mean, averaged over rows (GRPO as published).
    - ``seq-mean-token-sum``: each row's token sum, averaged over rows.

    With no active token the result is a zero that still backpropagates (zero gradients).
    """
    if mode not in AGG_MODES:
        raise UsageError(f"unknown loss aggregation {mode!r}", f"use one of: {', '.join(AGG_MODES)}")
    if global_tokens is not None and mode != "token-mean":
        raise UsageError(f"a global token count only applies to token-mean, not {mode}",
                         "drop global_tokens, or aggregate with token-mean")
    m = mask.to(values.dtype)
    masked = torch.where(m > 0, values, torch.zeros_like(values))
    zero = masked.sum() * 0.0
    if mode == "token-mean":
        if global_tokens is not None:
            if global_tokens <= 0:
                return zero
            return masked.sum() * world_size / global_tokens
        n = m.sum()
        return masked.sum() / n if n > 0 else zero
    row_n = m.sum(-1)
    rows = row_n > 0
    if not bool(rows.any()):
        return zero
    row = masked.sum(-1)
    if mode == "seq-mean-token-mean":
        row = row / row_n.clamp(min=1)
    return row[rows].mean()


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                eps_low: float = 0.2, eps_high: float = 0.28, dual_clip: float | None = 3.0,
                agg: AggMode = "token-mean", is_weights: torch.Tensor | None = None,
                global_tokens: float | None = None, world_size: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate with clip-higher and dual-clip; defaults are THOR's (0.2, 0.28, c = 3).

    Per token, with ``r = exp(logp - old_logp)``: ``max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))``,
    and for ``A < 0`` further capped at ``-A c`` (dual-clip: a token whose ratio ran far above 1 on
    a negative advantage cannot dominate the batch). ``dual_clip=None`` switches that off; it must
    be above 1 otherwise. ``is_weights`` (from ``importance.rollout_is_weights``) multiply the
    per-token loss as constants.

    Stats over active tokens: ``clip_frac_low`` (A < 0 and r < 1 - eps_low: the low clip binds),
    ``clip_frac_high`` (A > 0 and r > 1 + eps_high), ``dual_clip_frac`` (A < 0 and r > c),
    ``approx_kl``, ``ratio_mean/min/max`` (NaN when no token is active) and ``active_tokens``.
    """
    if eps_low < 0 or eps_high < 0:
        raise UsageError(f"clip ranges must be >= 0 (eps_low={eps_low}, eps_high={eps_high})", "use e.g. 0.2 and 0.28")
    if dual_clip is not None and dual_clip <= 1.0:
        raise UsageError(f"dual_clip c must be above 1, got {dual_clip}", "use 3 (THOR, verl) or None to switch it off")
    m = _check(logp, mask, old_logp=old_logp, is_weights=is_weights)
    adv = _per_token(advantages.detach(), logp)
    active = m > 0
    log_ratio = torch.where(active, logp - old_logp.detach(), torch.zeros_like(logp))
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        per_token = torch.where(adv < 0, torch.minimum(per_token, -adv * dual_clip), per_token)
    if is_weights is not None:
        per_token = per_token * is_weights.detach().to(logp.dtype)
    loss = aggregate(per_token, m, agg, global_tokens=global_tokens, world_size=world_size)

    with torch.no_grad():
        n = int(active.sum())
        r = ratio[active]
        a = adv[active]

        def frac(x: torch.Tensor) -> float:
            return float(x.sum()) / n if n else 0.0

        stats = {
            "clip_frac_low": frac((a < 0) & (r < 1.0 - eps_low)),
            "clip_frac_high": frac((a > 0) & (r > 1.0 + eps_high)),
            "dual_clip_frac": frac((a < 0) & (r > dual_clip)) if dual_clip is not None else 0.0,
            "approx_kl": float((r - 1.0 - log_ratio[active]).mean()) if n else 0.0,
            "ratio_mean": float(r.mean()) if n else float("nan"),
            "ratio_min": float(r.min()) if n else float("nan"),
            "ratio_max": float(r.max()) if n else float("nan"),
            "active_tokens": float(n),
        }
    return loss, stats


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, *, beta: float,
               estimator: KLEstimator = "k3", agg: AggMode = "token-mean", global_tokens: float | None = None,
               world_size: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """``beta * aggregate(KL estimate)`` of the policy against a reference, per token, with
    ``d = logp - ref_logp`` on tokens sampled from the policy:

    - ``k1 = d`` (unbiased, can be negative), ``k2 = d^2 / 2``, ``k3 = exp(-d) + d - 1`` (unbiased
      for KL(policy || ref), never negative, low variance: GRPO's choice).

    THOR and DAPO use no KL (``beta = 0``); the stats still report the mean estimate (``kl``).
    """
    if estimator not in ("k1", "k2", "k3"):
        raise UsageError(f"unknown KL estimator {estimator!r}", "use k1, k2 or k3")
    m = _check(logp, mask, ref_logp=ref_logp)
    d = torch.where(m > 0, logp - ref_logp.detach(), torch.zeros_like(logp))
    if estimator == "k1":
        kl = d
    elif estimator == "k2":
        kl = 0.5 * d * d
    else:
        kl = torch.exp(-d) + d - 1.0
    loss = beta * aggregate(kl, m, agg, global_tokens=global_tokens, world_size=world_size)
    with torch.no_grad():
        n = int((m > 0).sum())
        stats = {"kl": float(kl[m > 0].mean()) if n else 0.0}
    return loss, stats


def positive_nll(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                 global_tokens: float | None = None, world_size: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood over the active tokens whose advantage is > 0 (per-sequence
    advantages select whole samples; per-token advantages select tokens).

    THOR adds ``THOR_NLL_WEIGHT * positive_nll`` (alpha = 0.01) to the policy loss so that the
    policy keeps imitating its own correct trajectories. ``global_tokens`` is then the number of
    such tokens over all ranks. Zero (with zero gradients) when no sample has A > 0.
    """
    m = _check(logp, mask)
    adv = _per_token(advantages.detach(), logp)
    sel = m * (adv > 0).to(m.dtype)
    loss = aggregate(-logp, sel, "token-mean", global_tokens=global_tokens, world_size=world_size)
    return loss, {"nll_tokens": float(sel.sum())}
