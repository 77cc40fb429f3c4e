"""One update's worth of samples: rollouts through the engine, rewards, THOR's filters, DAPO's
dynamic sampling and THOR's step-level groups.

``collect`` returns ``Batch``: training samples, each ``prompt_ids`` + ``completion_ids`` with a
loss mask over the completion (1 only on ids the policy sampled, and for a step-level sample only
after its kept prefix), the rollout's log-probs, a reward and a group id. Trajectory groups are
(problem, step); step groups are (trajectory, cut). Advantages are computed per group by the
trainer (``advantages.group_advantages``), so both levels live in one batch.

Order of operations per generation batch (``problems_per_step`` prompts x ``group_size``):
rewards (the grader: 1/0, or TAPO's reward) -> overlong shaping (model tokens only; truncation
from the engine's stop_reason) -> THOR filters (failed cell, too short, no final \\boxed; then
groups with fewer than ``min_survivors``) -> dynamic sampling (groups whose rewards are all equal
are dropped; more batches are generated, up to ``max_gen_batches``, until the update has
``problems_per_step`` informative groups). Step level: trajectories with a failed cell (before
the filters drop them) are cut before the FIRST failing cell minus ``step_suffix_tokens`` of
reasoning, ``step_samples`` continuations of one tool round are sampled (self-correction off),
reward = the new cell ran; groups whose rewards are all equal carry no signal and are dropped.

On several ranks (``ranks``): each rank rolls out and scores its share of every generation batch
and of the step-level continuations, and gathers everyone's, so every rank runs the rest (filters,
dynamic sampling, cuts) on the same records and returns the same ``Batch`` (see ``ranks.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from thor_cli.log import log
from thor_cli.records.keys import content_key
from thor_cli.stages import merge
from thor_cli.train.rl import dapo, filters, step
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.ranks import Ranks


@dataclass
class RLSample:
    group: str
    level: str  # "traj" | "step"
    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int]
    rollout_logprobs: list[float] | None
    reward: float
    train: bool = True  # False: counts in its group's statistics, gets no loss (DAPO's overlong masking)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    samples: list[RLSample] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)  # every trajectory rolled out (for thor show)


def _cells(traj: dict[str, Any]) -> tuple[int, int]:
    outs = [t for t in traj.get("turns", []) if t.get("kind") == "output"]
    ok = sum(1 for t in outs if (t.get("exec") or {}).get("status") == "ok")
    return len(outs), ok


async def _rollouts(engine: Any, items: list[tuple[dict[str, Any], str, int]], concurrency: int,
                    fn: Any = None) -> list[tuple[tuple[dict[str, Any], str, int], dict[str, Any]]]:
    out = []
    async with aclosing(engine.run(items, concurrency=concurrency, fn=fn)) as results:
        async for item, fields in results:
            out.append((item, fields))
    return out


async def _gather(ranks: Ranks, part: list[Any]) -> list[Any]:
    """Every rank's ``part`` (``Ranks.gather``), waited for off the event loop."""
    if ranks.world == 1:
        return part
    return await asyncio.to_thread(ranks.gather, part)


async def collect(engine: Any, next_problems: Callable[[int], list[dict[str, Any]]], cfg: RLConfig, *,
                  reward_fn: Callable[[list[dict[str, Any]]], Any], step_index: int,
                  concurrency: int = 64, ranks: Ranks | None = None) -> Batch:
    """Samples for update ``step_index`` (module doc). ``next_problems(n)`` gives the next n
    problems of the data stream; ``reward_fn(records)`` awaits one reward per record, from that
    record alone."""
    ranks = ranks or Ranks()
    batch = Batch()
    t0 = time.monotonic()
    stats: dict[str, float] = {"gen_batches": 0, "groups_dropped_equal": 0, "groups_dropped_filter": 0,
                                "trajectories": 0, "filtered": 0}
    sampler: dapo.DynamicSampler[RLSample] = dapo.DynamicSampler(
        cfg.problems_per_step, cfg.max_gen_batches if cfg.dynamic_sampling else 1)
    failed_trajs: list[dict[str, Any]] = []
    rewards_all: list[float] = []
    n_calls = n_cells = n_ok = 0
    lengths: list[int] = []
    while not sampler.done:
        problems = next_problems(cfg.problems_per_step)
        items: list[tuple[dict[str, Any], str, int]] = []
        for prob in problems:
            key = content_key(prob, {"rl_step": step_index, "batch": int(stats["gen_batches"])}, stage="rl")
            items += [(prob, key, g) for g in range(cfg.group_size)]
        results = await _rollouts(engine, ranks.shard(items), concurrency)
        stats["gen_batches"] += 1
        records = []
        for (prob, key, g), fields in results:
            rec = merge(prob, fields)
            rec["rl"] = {"step": step_index, "group": key, "sample": g}
            records.append(rec)
        scored = await _gather(ranks, list(zip(records, await reward_fn(records), strict=True)))
        records, rewards = [r for r, _ in scored], [x for _, x in scored]
        by_group: dict[str, list[RLSample]] = {}
        rewards_by_group: dict[str, list[float]] = {}
        keep_flags: list[bool] = []
        group_ids: list[str] = []
        samples: list[RLSample] = []
        for rec, r in zip(records, rewards, strict=True):
            traj = rec.get("trajectory") or {}
            stats["trajectories"] += 1
            rewards_all.append(r)
            calls, ok = _cells(traj)
            n_calls += int(traj.get("n_tool_calls") or 0)
            n_cells += calls
            n_ok += ok
            mask = [int(x) for x in rec.get("completion_mask") or []]
            lengths.append(sum(mask))
            rec["rl"]["reward"] = r
            batch.records.append(rec)
            if rec.get("error") or not rec.get("completion_ids"):
                keep_flags.append(False)
                group_ids.append(rec["rl"]["group"])
                samples.append(RLSample(rec["rl"]["group"], "traj", [], [], [], None, r, False, rec))
                continue
            train = True
            if cfg.overlong_buffer > 0 or cfg.truncated != "none":
                r, train = dapo.shape_overlong(
                    r, mask, truncated=dapo.is_truncated(traj.get("stop_reason")),
                    max_len=int(engine.cfg.max_tokens), buffer=max(cfg.overlong_buffer, 1),
                    factor=cfg.overlong_penalty if cfg.overlong_buffer > 0 else 0.0, truncated_mode=cfg.truncated)  # type: ignore[arg-type]
            if cfg.step_level and filters.has_failed_cell(traj, count_retries=False):
                failed_trajs.append(rec)
            reason = None
            if cfg.filter_failed_cells and filters.has_failed_cell(traj):
                reason = "failed_cell"
            elif cfg.filter_min_tokens and filters.too_short(traj, cfg.filter_min_tokens):
                reason = "too_short"
            elif cfg.filter_require_boxed and not filters.ends_with_boxed(traj):
                reason = "no_boxed"
            if reason is not None:
                stats["filtered"] += 1
                stats[f"filtered_{reason}"] = stats.get(f"filtered_{reason}", 0) + 1
            keep_flags.append(reason is None)
            group_ids.append(rec["rl"]["group"])
            samples.append(RLSample(rec["rl"]["group"], "traj", list(rec["prompt_ids"]), list(rec["completion_ids"]),
                                    mask, rec.get("completion_logprobs"), r, train, rec))
        kept = filters.survivors(group_ids, keep_flags, cfg.min_survivors) if cfg.min_survivors > 1 else keep_flags
        for s, k in zip(samples, kept, strict=True):
            if k:
                by_group.setdefault(s.group, []).append(s)
                rewards_by_group.setdefault(s.group, []).append(s.reward)
        stats["groups_dropped_filter"] += len({g for g in group_ids}) - len(by_group)
        before = sampler.stats.dropped
        sampler.add(dapo.Group(g, rewards_by_group[g], by_group[g]) for g in by_group)
        stats["groups_dropped_equal"] += sampler.stats.dropped - before
    kept_groups, dstats = sampler.take()
    for grp in kept_groups:
        batch.samples.extend(grp.samples)
    stats["groups_kept"] = dstats.kept
    stats["batch_full"] = float(dstats.full)
    t_gen = time.monotonic() - t0

    if cfg.step_level and failed_trajs:
        t1 = time.monotonic()
        step_samples, sstats = await _step_level(engine, failed_trajs[: cfg.max_step_groups], cfg, concurrency,
                                                 ranks)
        batch.samples.extend(step_samples)
        stats.update(sstats)
        stats["time_step_level_s"] = time.monotonic() - t1
    n = max(len(rewards_all), 1)
    stats.update({
        "reward_mean": sum(rewards_all) / n,
        "accuracy": sum(1 for r in rewards_all if r >= 1.0) / n,
        "tool_calls_mean": n_calls / n,
        "cell_success": n_ok / n_cells if n_cells else float("nan"),
        "length_mean": sum(lengths) / max(len(lengths), 1),
        "time_generate_s": t_gen,
        "samples": len(batch.samples),
    })
    batch.stats = stats
    return batch


async def _step_level(engine: Any, records: list[dict[str, Any]], cfg: RLConfig, concurrency: int,
                      ranks: Ranks) -> tuple[list[RLSample], dict[str, float]]:
    """THOR's step-level groups: resample the step that wrote the first failing cell."""
    items: list[tuple[dict[str, Any], str, int]] = []
    cuts: dict[str, step.StepCut] = {}
    for rec in records:
        cut = step.step_cut(rec["trajectory"], suffix_tokens=cfg.step_suffix_tokens)
        if cut is None:
            continue
        key = f"{rec['rl']['group']}/{rec['rl']['sample']}@{cut.cut_turn}"
        cuts[key] = cut
        items += [(rec, key, j) for j in range(cfg.step_samples)]

    async def one(rec: dict[str, Any], key: str, j: int) -> dict[str, Any]:
        c = cuts[key]
        return await engine.continue_from(rec, cut_turn=c.cut_turn, backoff_tokens=c.backoff_tokens, one_round=True,
                                          sample=j, key=key, self_correct=False)

    results = await _gather(ranks, await _rollouts(engine, ranks.shard(items), concurrency, fn=one))
    groups: dict[str, list[RLSample]] = {}
    for (_rec, key, _j), fields in results:
        r = step.step_reward(fields)
        if r is None or not fields.get("completion_ids"):
            continue
        mask = step.step_loss_mask(fields)
        groups.setdefault(key, []).append(RLSample(
            f"step:{key}", "step", list(fields["prompt_ids"]), list(fields["completion_ids"]), mask,
            fields.get("completion_logprobs"), r, True, {}))
    out: list[RLSample] = []
    mixed = 0
    passes: list[float] = []
    for g in groups.values():
        rs = [s.reward for s in g]
        passes += rs
        if dapo.is_mixed(rs):
            mixed += 1
            out.extend(g)
    log.debug("rl: step level: %d cuts, %d informative groups", len(groups), mixed)
    return out, {"step_groups": float(len(groups)), "step_groups_kept": float(mixed),
                 "step_pass_rate": sum(passes) / len(passes) if passes else float("nan")}


def cycle(problems: list[dict[str, Any]], seed: int, start: int = 0) -> Iterator[dict[str, Any]]:
    """The data stream: ``problems`` reshuffled each epoch (seeded), from position ``start``."""
    import random

    pos = 0
    epoch = 0
    while True:
        order = list(range(len(problems)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for i in order:
            if pos >= start:
                yield problems[i]
            pos += 1
        epoch += 1
