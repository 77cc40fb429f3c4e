"""The one loop of a sampling stage: records x k samples -> keys / shard / resume -> engine -> sink.

    counts = await run_samples(problems, engine, stage="eval", samples=4, key_config=cfg, done=sink.done,
                               emit=sink.write, finish=grade_it, shard=shard, concurrency=64)

For each problem this shard owns (by position: ``--shard i/n`` splits problems, never one
problem's samples) and each sample index, the unit's content key is
``content_key(problem, key_config, stage=stage, sample=s)``; a key already in ``done`` (the
output's keys on ``--resume``) is skipped. The rest go through ``RolloutEngine.run`` with at most
``concurrency`` in flight, pulled lazily. Each finished trajectory becomes a record:
``merge(problem, fields)`` (the problem's fields, less an earlier stage's ids, plus the engine's),
which ``finish`` may grow (a grade, stage metadata) or replace (``None`` drops it; a list emits
several, e.g. thor gen's rejected attempts); the runner then adds ``keys[stage]`` and emits. ``thor eval`` runs on this; ``thor gen`` and ``thor rl``
will.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from thor_cli.log import log, progress
from thor_cli.records.access import COMPLETION_FIELDS
from thor_cli.records.jsonl import iter_records
from thor_cli.records.keys import KEYS_FIELD, content_key
from thor_cli.records.shard import Shard


@dataclass(frozen=True)
class Sample:
    """One unit of work: a problem, its sample index and content key, and how long it took."""

    problem: dict[str, Any]
    key: str
    index: int
    wall_s: float


@dataclass
class RunCounts:
    started: int = 0
    written: int = 0
    skipped: int = 0  # already done (resume)
    dropped: int = 0  # finish returned None


Finish = Callable[[Sample, dict[str, Any]], Awaitable[dict[str, Any] | list[dict[str, Any]] | None]]
Rollout = Callable[[dict[str, Any], str, int], Awaitable[dict[str, Any]]]


def load_problems(benchmarks: list[str], inputs: list[str] | None, limit: int | None) -> Iterator[dict[str, Any]]:
    """Problems from named benchmarks (``limit`` each), or from JSONL inputs (``limit`` in all)."""
    if benchmarks:
        from thor_cli.data import load_benchmark

        for name in benchmarks:
            for prob in load_benchmark(name, limit):
                prob.setdefault("source", name)
                yield prob
        return
    for i, rec in enumerate(iter_records(inputs or ["-"])):
        if limit is not None and i >= limit:
            return
        prob = dict(rec.data)
        rec.require("question", str)
        if "id" not in prob:
            prob["id"] = f"{rec.path}:{rec.line}"
        yield prob


def merge(problem: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The output record of one trajectory: the problem's fields (the ids of an input's earlier
    trajectory do not belong to this one; its content keys are re-added by the runner) then the
    engine's. A ``prompt_ids`` the problem came with is input and stays unless the engine's replaces it."""
    rec = {k: v for k, v in problem.items() if k != KEYS_FIELD and k not in COMPLETION_FIELDS}
    rec.update(fields)
    return rec


async def run_samples(problems: Iterable[dict[str, Any]], engine: Any, *, stage: str, samples: int,
                      key_config: dict[str, Any], emit: Callable[[dict[str, Any]], None],
                      finish: Finish | None = None, done: set[str] | frozenset[str] = frozenset(),
                      shard: Shard | None = None, concurrency: int = 64, rollout: Rollout | None = None) -> RunCounts:
    """Roll out every (problem, sample) not in ``done`` and emit its records (module doc).
    ``rollout`` replaces ``engine.rollout`` as what runs per unit (``RolloutEngine.run``'s ``fn``)."""
    counts = RunCounts()
    t_start: dict[tuple[str, int], float] = {}

    def items() -> Iterator[tuple[dict[str, Any], str, int]]:
        for pos, prob in enumerate(problems):
            if shard is not None and not shard.owns(pos):
                continue
            for s in range(samples):
                key = content_key(prob, key_config, stage=stage, sample=s)
                if key in done:
                    counts.skipped += 1
                    continue
                t_start[(key, s)] = time.monotonic()  # pulled lazily: when a slot frees up
                counts.started += 1
                yield prob, key, s

    started = time.monotonic()
    with progress(stage) as bar:
        # aclosing: if finishing or writing fails, the trajectories still running are cancelled and
        # awaited here, not whenever the generator happens to be collected
        async with aclosing(engine.run(items(), concurrency=concurrency, fn=rollout)) as results:
            async for (prob, key, s), fields in results:
                unit = Sample(prob, key, s, time.monotonic() - t_start.pop((key, s), started))
                out = await finish(unit, fields) if finish is not None else merge(prob, fields)
                recs = out if isinstance(out, list) else [] if out is None else [out]
                if not recs:
                    counts.dropped += 1
                for rec in recs:  # every record of a unit carries the unit's key (resume skips it whole)
                    rec[KEYS_FIELD] = {**(prob.get(KEYS_FIELD) or {}), stage: key}
                    emit(rec)
                    counts.written += 1
                bar.advance()
    if counts.skipped:
        log.info("%s: %d samples already done (resume)", stage, counts.skipped)
    return counts
