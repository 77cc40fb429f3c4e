"""Importance-sampling correction between the rollout engine and the trainer.

The rollout engine (vLLM, thor's hf backend) samples with its own numerics; its log-probs
(thor's ``completion_logprobs``) differ from the trainer's log-probs of the same ids under the
same weights (``old_logp``). PPO's ratio is taken against ``old_logp``; the weight
``w = pi_old / pi_rollout`` corrects for the tokens having been drawn from the rollout's
distribution instead (TRL's ``vllm_importance_sampling_correction``, verl's rollout IS).

- ``level="token"``: one weight per token, ``exp(old - rollout)``.
- ``level="sequence"``: one weight per row, ``exp(sum over active tokens of (old - rollout))``,
  spread over its tokens.
- ``mode="truncate"``: weights above ``cap`` become ``cap`` (and below ``cap_min``, when given,
  ``cap_min``). ``mode="mask"``: tokens (or whole rows) outside [cap_min, cap] get weight 0.

Departures, on purpose: a NaN rollout log-prob (the backend gave none) counts as no mismatch
(weight 1), as in TRL; the sequence-level log-ratio is clamped to +-50 before ``exp`` so a long
drifting row gives a huge finite weight (then capped) instead of inf. Masked-out tokens are still
counted by a token-mean's denominator: to drop them from it as well, multiply the loss mask by
``weights > 0``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from thor_cli.errors import ThorError, UsageError

ISLevel = Literal["token", "sequence"]
ISMode = Literal["truncate", "mask"]
_MAX_LOG = 50.0


def rollout_is_weights(old_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor, *,
                       level: ISLevel = "token", mode: ISMode = "truncate", cap: float = 2.0,
                       cap_min: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """(weights (B, T), stats). Weights carry no gradient and are 0 on inactive tokens.

    Stats over the units (active tokens, or rows with an active token): ``ratio_mean`` and
    ``ratio_max`` of the raw ratio (before the cap), ``capped_frac`` (units outside the bounds:
    truncated or dropped) and ``weight_mean`` (after).
    """
    if level not in ("token", "sequence"):
        raise UsageError(f"unknown importance-sampling level {level!r}", "use 'token' or 'sequence'")
    if mode not in ("truncate", "mask"):
        raise UsageError(f"unknown importance-sampling mode {mode!r}", "use 'truncate' or 'mask'")
    if cap <= 0 or (cap_min is not None and not 0 <= cap_min <= cap):
        raise UsageError(f"importance-sampling bounds must satisfy 0 <= cap_min <= cap, cap > 0 "
                         f"(cap={cap}, cap_min={cap_min})", "use e.g. cap=2.0")
    if old_logp.shape != rollout_logp.shape or mask.shape != old_logp.shape or old_logp.dim() != 2:
        raise ThorError(f"old_logp {tuple(old_logp.shape)}, rollout_logp {tuple(rollout_logp.shape)} and mask "
                        f"{tuple(mask.shape)} must be the same (B, T)", "pad them from the same completions")
    with torch.no_grad():
        m = mask.to(torch.float64) > 0
        diff = torch.nan_to_num(old_logp.double() - rollout_logp.double(), nan=0.0)
        diff = torch.where(m, diff, torch.zeros_like(diff))
        if level == "token":
            log_ratio, units = diff, m
        else:
            log_ratio, units = diff.sum(-1, keepdim=True), m.any(-1, keepdim=True)
        ratio = torch.exp(log_ratio.clamp(-_MAX_LOG, _MAX_LOG))
        lo = cap_min if cap_min is not None else 0.0
        outside = (ratio > cap) | (ratio < lo)
        w = ratio.clamp(min=lo, max=cap) if mode == "truncate" else torch.where(outside, 0.0, ratio)
        weights = torch.where(m, w.expand_as(diff), torch.zeros_like(diff)).to(old_logp.dtype)
        u = units.expand_as(ratio) if level == "token" else units
        n = int(u.sum())
        raw, kept = ratio[u], w[u]
        stats = {
            "ratio_mean": float(raw.mean()) if n else math.nan,
            "ratio_max": float(raw.max()) if n else math.nan,
            "capped_frac": float(outside[u].sum()) / n if n else 0.0,
            "weight_mean": float(kept.mean()) if n else math.nan,
        }
    return weights, stats
