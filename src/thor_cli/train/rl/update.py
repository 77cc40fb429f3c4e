"""The optimizer steps of ``thor rl`` from a ``Batch``: advantages, log-probs, the loss, backward.

The trainer's log-probs come from ``backends.sampling.token_logprobs`` under the rollout's own
temperature / top-k / top-p (the same code the hf backend samples with), so the ratio against
the generator's log-probs means what it says. By default one optimizer step per batch (THOR,
DAPO): the "old" policy is the current one, so the PPO ratio is exactly 1 and the clip only
matters through the importance-sampling correction against the generator (``importance``), which
differs whenever the generator is not this very model in this very numeric state (vLLM, a
server, bf16).

``minibatches`` > 1 (verl's PPO mini-batches, TRL's ``steps_per_generation``) splits the batch
into that many optimizer steps and ``epochs`` > 1 (``num_iterations``) passes over it again:
more updates per generated sample where generation is the cost (a CPU). The advantages are the
whole batch's; the old log-probs of every mini-batch after the first come from a no-grad pass
before the first step (``old_logprobs``), so the ratio and its clip bound how far later steps
move; the importance-sampling weight compares those old log-probs with the generator's.

Levels: trajectory samples and step samples are each aggregated over their own tokens (token-mean
with the level's global token count across micro-batches), then added with ``step_weight``
(THOR). The NLL term (``nll_alpha``) covers positive-advantage trajectory tokens.

On several ranks (``ranks``, see ``ranks.py``) every rank holds the whole batch, so the
advantages, the mini-batches and each level's token count are the global ones; a rank
backpropagates only its share of each level's samples (``_trainable`` then ``Ranks.shard``), and
the gradients are summed over ranks before the clip and the optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from thor_cli.backends.sampling import token_logprobs
from thor_cli.train.rl.advantages import group_advantages
from thor_cli.train.rl.collect import RLSample
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.importance import rollout_is_weights
from thor_cli.train.rl.losses import kl_penalty, policy_loss, positive_nll
from thor_cli.train.rl.ranks import Ranks
from thor_cli.train.rl.sharding import grad_norm_value, is_sharded


def _pad(samples: Sequence[RLSample], adv: Sequence[float], pad_id: int, device: Any,
         old: Sequence[list[float] | None] | None = None) -> dict[str, torch.Tensor]:
    """Right-padded (B, L) ids and attention, and (B, L-1) targets, loss mask, rollout log-probs,
    old log-probs (NaN where none) and advantages aligned with the logits that predict each target."""
    seqs = [s.prompt_ids + s.completion_ids for s in samples]
    width = max(len(x) for x in seqs)
    b = len(seqs)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    mask = torch.zeros((b, width - 1))
    rollout = torch.full((b, width - 1), float("nan"))
    olds = torch.full((b, width - 1), float("nan"))
    advs = torch.zeros((b, width - 1))
    for i, (s, x) in enumerate(zip(samples, seqs, strict=True)):
        ids[i, :len(x)] = torch.tensor(x)
        attn[i, :len(x)] = 1
        p = len(s.prompt_ids)
        n = len(s.completion_ids)
        # the logit at position t predicts token t + 1: completion token j sits at target p - 1 + j
        mask[i, p - 1:p - 1 + n] = torch.tensor(s.loss_mask[:n], dtype=torch.float)
        if s.rollout_logprobs is not None and len(s.rollout_logprobs) == n:
            rollout[i, p - 1:p - 1 + n] = torch.tensor(s.rollout_logprobs, dtype=torch.float)
        if old is not None and old[i] is not None:
            olds[i, p - 1:p - 1 + n] = torch.tensor(old[i], dtype=torch.float)
        advs[i, :] = adv[i]
    return {"ids": ids.to(device), "attn": attn.to(device), "mask": mask.to(device),
            "rollout": rollout.to(device), "old": olds.to(device),
            "adv": advs.to(device)}


def _completion_logits(model: Any, ids: torch.Tensor, attn: torch.Tensor, start: int,
                       amp: torch.dtype | None) -> torch.Tensor:
    """Logits at positions ``start .. L-2`` (those that predict the targets ``start+1 .. L-1``).

    The prompt's positions predict nothing the loss uses, so the LM head (a third of a small
    model's FLOPs with a 49k vocabulary) runs only on the rest: ``logits_to_keep`` where the model
    takes it, else a slice of the full logits (the same numbers either way)."""
    keep = ids.shape[1] - start
    with torch.autocast(ids.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep).logits
    if logits.shape[1] != keep:  # a model that ignored the argument
        logits = logits[:, start:]
    return logits[:, :-1].float()


def minibatch_split(samples: Sequence[RLSample], n: int) -> list[list[int]]:
    """Sample indices in ``n`` mini-batches (one optimizer step each): each level's samples, in
    batch order (whole groups stay together where the counts allow), dealt into ``n`` contiguous
    near-equal runs, so every mini-batch holds its share of trajectory and step samples. Fewer
    than ``n`` when there are fewer samples; empty mini-batches are dropped."""
    out: list[list[int]] = [[] for _ in range(n)]
    for level in ("traj", "step"):
        idx = [i for i, s in enumerate(samples) if s.level == level]
        for j in range(n):
            out[j].extend(idx[len(idx) * j // n:len(idx) * (j + 1) // n])
    return [mb for mb in out if mb]


@torch.no_grad()
def old_logprobs(model: Any, samples: Sequence[RLSample], idx: Sequence[int], cfg: RLConfig, *, temperature: float,
                 top_k: int, top_p: float, pad_id: int, ranks: Ranks | None = None) -> dict[int, list[float]]:
    """The current policy's log-prob of each completion token of ``samples[i]`` for ``i`` in
    ``idx``, before any optimizer step of this update: the "old" policy of PPO's ratio for every
    mini-batch after the first (and every later epoch), where the weights have moved since."""
    device = next(model.parameters()).device
    amp = getattr(torch, str(cfg.autocast_dtype)) if cfg.autocast_dtype not in (None, "float32") else None
    t_temp = temperature if temperature > 0 else 1.0
    was_training = model.training
    model.train()  # the same mode (dropout aside, identical numerics) as the update's own forward
    out: dict[int, list[float]] = {}
    idle = _idle_runs(model, ranks or Ranks(), len(idx), cfg.micro_batch)
    try:
        for b in range(0, len(idx), cfg.micro_batch):
            part = list(idx[b:b + cfg.micro_batch])
            batch = _pad([samples[i] for i in part], [0.0] * len(part), pad_id, device)
            start = max(min(len(samples[i].prompt_ids) for i in part) - 1, 0)
            logits = _completion_logits(model, batch["ids"], batch["attn"], start, amp)
            logp = token_logprobs(logits, batch["ids"][:, start + 1:], t_temp, top_k, top_p)
            for row, i in enumerate(part):
                p = len(samples[i].prompt_ids) - 1 - start
                out[i] = logp[row, p:p + len(samples[i].completion_ids)].float().tolist()
        for _ in range(idle):
            _idle_pass(model, samples, pad_id, device, amp, backward=False)
    finally:
        model.train(was_training)
    return out


def _trainable(samples: Sequence[RLSample], members: Sequence[int], level: str) -> list[int]:
    """The members of ``level`` that carry a loss (trained, with at least one loss token)."""
    return [i for i in members if samples[i].level == level and samples[i].train and any(samples[i].loss_mask)]


def update(model: Any, optimizer: Any, samples: list[RLSample], cfg: RLConfig, *, temperature: float,
           top_k: int, top_p: float, pad_id: int, ref_model: Any = None, scheduler: Any = None,
           ranks: Ranks | None = None) -> dict[str, float]:
    """``cfg.epochs`` x ``cfg.minibatches`` optimizer steps over ``samples`` (one by default:
    THOR's and DAPO's setting); returns the update's training stats (means over its optimizer
    steps; ``optimizer_steps`` counts them). ``ranks``: the same ``samples`` on every rank, each
    training its share (module doc)."""
    ranks = ranks or Ranks()
    if not samples:
        return {"skipped_update": 1.0}
    adv_all = group_advantages([s.reward for s in samples], [s.group for s in samples], scale=cfg.adv_scale,  # type: ignore[arg-type]
                               baseline=cfg.adv_baseline).tolist()  # type: ignore[arg-type]
    minibatches = minibatch_split(samples, cfg.minibatches)
    old: dict[int, list[float]] = {}
    if len(minibatches) > 1 or cfg.epochs > 1:
        # every mini-batch but the very first sees weights that already moved: score them now
        later = [i for mb in (minibatches if cfg.epochs > 1 else minibatches[1:]) for level in ("traj", "step")
                 for i in ranks.shard(_trainable(samples, mb, level))]
        old = old_logprobs(model, samples, later, cfg, temperature=temperature, top_k=top_k, top_p=top_p,
                           pad_id=pad_id, ranks=ranks)
    runs: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        for j, mb in enumerate(minibatches):
            first = epoch == 0 and j == 0
            runs.append(_optimizer_step(model, optimizer, samples, mb, adv_all, {} if first else old, cfg,
                                        temperature=temperature, top_k=top_k, top_p=top_p, pad_id=pad_id,
                                        ref_model=ref_model, scheduler=scheduler, ranks=ranks))
    stats: dict[str, float] = {}
    for k in {k for r in runs for k in r}:
        vs = [r[k] for r in runs if k in r]
        if k.endswith("_samples") or k.endswith("_tokens"):
            stats[k] = sum(vs)
        else:
            stats[k] = max(vs) if k.endswith("_max") else min(vs) if k.endswith("_min") else sum(vs) / len(vs)
    stats["optimizer_steps"] = float(len(runs))
    stats["advantage_abs_mean"] = sum(abs(a) for a in adv_all) / len(adv_all)
    return stats


def _optimizer_step(model: Any, optimizer: Any, samples: list[RLSample], members: list[int], adv_all: list[float],
                    old_lp: dict[int, list[float]], cfg: RLConfig, *, temperature: float, top_k: int, top_p: float,
                    pad_id: int, ref_model: Any, scheduler: Any, ranks: Ranks) -> dict[str, float]:
    """Backward over this rank's share of ``samples[members]``, gradients summed over ranks, and one
    optimizer step. The PPO ratio's old log-probs are ``old_lp[i]`` where given, else the current
    weights' own (the ratio is exactly 1)."""
    stats: dict[str, float] = {}
    device = next(model.parameters()).device
    amp = getattr(torch, str(cfg.autocast_dtype)) if cfg.autocast_dtype not in (None, "float32") else None
    model.train()
    optimizer.zero_grad(set_to_none=True)
    acc: dict[str, list[float]] = {}
    total_loss = 0.0
    t_temp = temperature if temperature > 0 else 1.0
    for level, weight in (("traj", 1.0), ("step", cfg.step_weight)):
        idx = _trainable(samples, members, level)
        if not idx:
            continue
        # over the whole mini-batch (every rank's share): each rank's terms are parts of one loss
        level_tokens = float(sum(sum(samples[i].loss_mask) for i in idx))
        pos_tokens = float(sum(sum(samples[i].loss_mask) for i in idx if adv_all[i] > 0))
        mine = ranks.shard(idx)
        idle = _idle_runs(model, ranks, len(mine), cfg.micro_batch)
        for start in range(0, len(mine), cfg.micro_batch):
            part = mine[start:start + cfg.micro_batch]
            batch = _pad([samples[i] for i in part], [adv_all[i] for i in part], pad_id, device,
                         old=[old_lp.get(i) for i in part])
            # targets before the shortest prompt's end are never in the loss: cut them from every tensor
            start = max(min(len(samples[i].prompt_ids) for i in part) - 1, 0)
            for k in ("mask", "rollout", "adv", "old"):
                batch[k] = batch[k][:, start:]
            targets = batch["ids"][:, start + 1:]
            logits = _completion_logits(model, batch["ids"], batch["attn"], start, amp)
            logp = token_logprobs(logits, targets, t_temp, top_k, top_p)
            old = torch.where(torch.isnan(batch["old"]), logp.detach(), batch["old"])
            m = batch["mask"]
            is_w = None
            if cfg.is_level is not None:
                rollout = torch.where(torch.isnan(batch["rollout"]), old, batch["rollout"])
                is_w, ist = rollout_is_weights(old, rollout, m, level=cfg.is_level, mode=cfg.is_mode,  # type: ignore[arg-type]
                                               cap=cfg.is_cap)
                for k, v in ist.items():
                    acc.setdefault(f"is_{k}", []).append(v)
            token_mean = cfg.loss_agg == "token-mean"
            share = 1.0 if token_mean else len(part) / len(idx)
            loss, pst = policy_loss(logp, old, batch["adv"], m, eps_low=cfg.eps_low, eps_high=cfg.eps_high,
                                    dual_clip=cfg.dual_clip, agg=cfg.loss_agg, is_weights=is_w,  # type: ignore[arg-type]
                                    global_tokens=level_tokens if token_mean else None)
            loss = loss * share
            if level == "traj" and cfg.nll_alpha > 0 and pos_tokens > 0:
                nll, _ = positive_nll(logp, batch["adv"], m, global_tokens=pos_tokens)
                loss = loss + cfg.nll_alpha * nll
                acc.setdefault("nll", []).append(float(nll.detach()))
            if cfg.beta > 0 and ref_model is not None:
                with torch.no_grad():
                    ref_logits = _completion_logits(ref_model, batch["ids"], batch["attn"], start, amp)
                    ref_lp = token_logprobs(ref_logits, targets, t_temp, top_k, top_p)
                kl, kst = kl_penalty(logp, ref_lp, m, beta=cfg.beta, estimator=cfg.kl_estimator,  # type: ignore[arg-type]
                                     agg=cfg.loss_agg, global_tokens=level_tokens if token_mean else None)  # type: ignore[arg-type]
                loss = loss + kl * share
                acc.setdefault("kl", []).append(kst["kl"])
            (weight * loss).backward()
            total_loss += float(weight * loss.detach())
            with torch.no_grad():
                active = m > 0
                if bool(active.any()):
                    lsm = torch.log_softmax(logits[active] / t_temp, dim=-1)
                    acc.setdefault("entropy", []).append(float(-(lsm.exp() * lsm).sum(-1).mean()))
            for k, v in pst.items():
                acc.setdefault(k, []).append(v)
        for _ in range(idle):
            _idle_pass(model, samples, pad_id, device, amp, backward=True)
        stats[f"{level}_samples"] = float(len(idx))
        stats[f"{level}_tokens"] = level_tokens
    if ranks.world > 1:
        if not is_sharded(model):  # FSDP's reduce-scatter has summed them (sharding.py)
            ranks.sum_grads(list(model.parameters()))
        total_loss, acc = _gathered(ranks, total_loss, acc)
    grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    stats["loss"] = total_loss
    stats["grad_norm"] = grad_norm
    for k, vs in acc.items():
        vs = [v for v in vs if v == v]  # drop NaNs (no active token in a micro-batch)
        if k == "nll":  # each micro-batch's is its part of the one token mean (global_tokens)
            stats[k] = sum(vs)
        elif vs:
            stats[k] = max(vs) if k.endswith("_max") else min(vs) if k.endswith("_min") else sum(vs) / len(vs)
    return stats


def _idle_runs(model: Any, ranks: Ranks, items: int, micro_batch: int) -> int:
    """How many idle passes this rank runs after its micro-batches over ``items``: every forward
    and backward of a sharded model is collective, so each rank runs as many as the rank with the
    most (agreed before any of them: agreeing after would deadlock); 0 when not sharded."""
    if not is_sharded(model):
        return 0
    runs = -(-items // micro_batch)
    return ranks.max(runs) - runs


def _idle_pass(model: Any, samples: Sequence[RLSample], pad_id: int, device: Any, amp: Any, *, backward: bool) -> None:
    """A forward (and a zero-weight backward) that changes nothing, so that a rank with a smaller
    share takes part in the collectives of a sharded model's micro-batches as often as the others."""
    batch = _pad([samples[0]], [0.0], pad_id, device)
    with torch.set_grad_enabled(backward):
        logits = _completion_logits(model, batch["ids"], batch["attn"], 0, amp)
        if backward:
            (logits.float().sum() * 0.0).backward()


def _gathered(ranks: Ranks, loss: float, acc: dict[str, list[float]]) -> tuple[float, dict[str, list[float]]]:
    """The whole step's loss (the sum of the ranks' parts) and every rank's per-micro-batch stats."""
    parts = ranks.gather([(loss, acc)])
    merged: dict[str, list[float]] = {}
    for _, a in parts:
        for k, vs in a.items():
            merged.setdefault(k, []).extend(vs)
    return sum(x for x, _ in parts), merged
