"""Group-relative advantages (GRPO and its variants) over explicit group ids.

A batch mixes groups of any size: THOR's trajectory-level groups (16 rollouts of one problem) and
its step-level groups (16 continuations of one cut point) sit in one batch, each sample naming its
group by id. Groups are found by id, never by position (TRL's ``rewards.view(-1, G)`` needs G
contiguous rows; verl groups by an index array the same way this module does).

Departures from the papers and peers, on purpose:
- A group of one sample gets advantage 0: it has no baseline to compare with. verl uses mean 0
  and std 1 there, which turns the raw reward into the advantage.
- A group whose rewards are all equal gets 0 for every sample (the std is 0, and 0 / (0 + eps)
  is 0), as in GRPO; DAPO's dynamic sampling drops such groups before they get here.
- The std is the sample std (Bessel-corrected), as in verl and TRL; ``unbiased_std=False`` gives
  the population std.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from thor_cli.errors import ThorError, UsageError

Scale = Literal["std", "none"]
Baseline = Literal["mean", "loo"]


def group_index(group_ids: Sequence[Hashable]) -> tuple[torch.Tensor, list[Hashable]]:
    """(index of each sample's group, the distinct ids in first-seen order).

    >>> idx, ids = group_index(["b", "a", "b"])
    >>> idx.tolist(), ids
    ([0, 1, 0], ['b', 'a'])
    """
    where: dict[Hashable, int] = {}
    idx = [where.setdefault(g, len(where)) for g in group_ids]
    return torch.tensor(idx, dtype=torch.long), list(where)


def group_advantages(rewards: Sequence[float] | torch.Tensor, group_ids: Sequence[Hashable], *,
                     scale: Scale = "std", baseline: Baseline = "mean", eps: float = 1e-6,
                     unbiased_std: bool = True) -> torch.Tensor:
    """One advantage per sample: ``(r - baseline) / (std + eps)`` within the sample's group.

    - ``baseline="mean"``: the group mean (GRPO). ``"loo"``: the mean of the *other* samples of the
      group (RLOO), i.e. ``n / (n - 1) * (r - mean)``.
    - ``scale="std"``: divide by the group's reward std plus ``eps`` (GRPO, THOR: eps = 1e-6).
      ``"none"``: no division (Dr.GRPO), so easy and hard groups are not re-weighted.

    Returns a float tensor of shape ``(N,)`` (on ``rewards``' device when it is a tensor); it
    carries no gradient.

    >>> group_advantages([1.0, 0.0, 1.0, 0.0], ["a", "a", "b", "b"], scale="none").tolist()
    [0.5, -0.5, 0.5, -0.5]
    """
    if scale not in ("std", "none"):
        raise UsageError(f"unknown advantage scale {scale!r}", "use 'std' (GRPO) or 'none' (Dr.GRPO)")
    if baseline not in ("mean", "loo"):
        raise UsageError(f"unknown advantage baseline {baseline!r}", "use 'mean' (GRPO) or 'loo' (leave-one-out)")
    r = (rewards.detach() if isinstance(rewards, torch.Tensor) else torch.tensor(rewards)).to(torch.float64)
    if r.dim() != 1 or r.numel() != len(group_ids):
        raise ThorError(f"{r.numel()} rewards (shape {tuple(r.shape)}) for {len(group_ids)} group ids",
                        "pass one reward and one group id per sample")
    out_dtype = rewards.dtype if isinstance(rewards, torch.Tensor) and rewards.is_floating_point() else torch.float32
    if r.numel() == 0:
        return torch.zeros(0, dtype=out_dtype, device=r.device)
    idx, ids = group_index(group_ids)
    idx = idx.to(r.device)
    g = len(ids)
    n = torch.zeros(g, dtype=r.dtype, device=r.device).index_add_(0, idx, torch.ones_like(r))
    total = torch.zeros_like(n).index_add_(0, idx, r)
    mean = total / n
    dev = r - mean[idx]
    sq = torch.zeros_like(n).index_add_(0, idx, dev * dev)
    dof = (n - 1) if unbiased_std else n
    std = torch.where(dof > 0, sq / dof.clamp(min=1), torch.zeros_like(sq)).sqrt()
    ni = n[idx]
    if baseline == "loo":
        # r - (total - r) / (n - 1) == n / (n - 1) * (r - mean); undefined for n == 1 (set to 0 below)
        adv = dev * ni / (ni - 1).clamp(min=1)
    else:
        adv = dev
    if scale == "std":
        adv = adv / (std[idx] + eps)
    # exactly 0 for singletons and for groups of equal rewards (rounding in the mean would
    # otherwise leave ~1e-11 after the division by std + eps)
    hi = torch.full_like(n, -torch.inf).scatter_reduce(0, idx, r, "amax")
    lo = torch.full_like(n, torch.inf).scatter_reduce(0, idx, r, "amin")
    informative = (ni > 1) & (hi[idx] > lo[idx])
    adv = torch.where(informative, adv, torch.zeros_like(adv))
    return adv.to(out_dtype)
