"""``thor eval``: problems -> k samples each through the rollout engine -> graded records -> metrics.

One record per (problem, sample), keyed ``content_key(problem, config, stage="eval", sample=s)``
so ``--resume`` skips finished samples and ``--shard i/n`` splits problems (not samples) across
processes. Grading happens as each sample finishes (math in the grader pool, code tests in a
sandbox pool started on the first code problem). ``grade_only`` re-grades existing records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from thor_cli.evaluate.metrics import slim, summarize
from thor_cli.grading import GradeConfig, Grader
from thor_cli.log import log, progress
from thor_cli.records.access import COMPLETION_FIELDS, benchmark_of, drop_ids
from thor_cli.records.jsonl import OutputSink, iter_records
from thor_cli.records.keys import KEYS_FIELD, content_key
from thor_cli.records.shard import Shard

STAGE = "eval"


@dataclass
class EvalOptions:
    samples: int = 4
    concurrency: int = 64
    grade: GradeConfig = field(default_factory=GradeConfig)
    model: str = ""
    keep_ids: bool = False  # keep token ids/masks/log-probs in the records (the engine always makes them)
    key_config: dict[str, Any] = field(default_factory=dict)  # what determines results (content keys)


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


async def run_eval(problems: Iterable[dict[str, Any]], engine: Any, sink: OutputSink, opts: EvalOptions, *,
                   shard: Shard | None = None, emit: Callable[[dict[str, Any]], None] | None = None,
                   sandbox: Any = None) -> dict[str, Any]:
    """Roll out, grade and write every (problem, sample) not already in ``sink``; return the summary
    of this run's records plus those already in the sink (resume). ``sandbox``: a started pool that
    code tests share with the python tool (else one is started on the first code problem)."""
    emit = emit or sink.write
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    finished_at: dict[str, float] = {}
    skipped = 0

    def items() -> Iterator[tuple[dict[str, Any], str, int]]:
        nonlocal skipped
        for pos, prob in enumerate(problems):
            if shard is not None and not shard.owns(pos):
                continue
            for s in range(opts.samples):
                key = content_key(prob, opts.key_config, stage=STAGE, sample=s)
                if key in sink.done:
                    skipped += 1
                    continue
                yield prob, key, s

    t_start: dict[tuple[str, int], float] = {}

    def timed() -> Iterator[tuple[dict[str, Any], str, int]]:
        for prob, key, s in items():
            t_start[(key, s)] = time.monotonic()  # pulled lazily: when a slot frees up
            yield prob, key, s

    with Grader(opts.grade, sandbox=sandbox) as grader, progress("eval") as bar:
        try:
            # aclosing: if grading or writing fails, the trajectories still running are cancelled
            # and awaited here, not whenever the generator happens to be collected
            async with aclosing(engine.run(timed(), concurrency=opts.concurrency)) as results:
                async for (prob, key, s), fields in results:
                    # the ids of an input's earlier trajectory do not belong to this one
                    rec = {k: v for k, v in prob.items() if k != KEYS_FIELD and k not in COMPLETION_FIELDS}
                    tokens = len(fields.get("completion_ids") or [])
                    # only what the engine added: a prompt_ids the problem came with stays
                    rec.update(fields if opts.keep_ids else drop_ids(fields))
                    rec["sample"] = s
                    wall = time.monotonic() - t_start.pop((key, s), started)
                    rec["eval"] = {"model": opts.model, "wall_s": round(wall, 3), "tokens": tokens}
                    rec["grade"] = (await grader.agrade([rec]))[0].to_dict()
                    rec[KEYS_FIELD] = {**(prob.get(KEYS_FIELD) or {}), STAGE: key}
                    emit(rec)
                    seen.append(slim(rec))
                    finished_at[benchmark_of(rec)] = time.monotonic() - started
                    bar.advance()
        finally:
            await grader.aclose()
    if skipped:
        log.info("eval: %d samples already done (resume)", skipped)
    return summarize(seen, wall_s=finished_at)


def grade_only(records: Iterable[dict[str, Any]], opts: EvalOptions, emit: Callable[[dict[str, Any]], None],
               batch: int = 256) -> dict[str, Any]:
    """Re-grade existing eval records (no model) and recompute the summary."""
    seen: list[dict[str, Any]] = []
    with Grader(opts.grade) as grader:
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            for rec, g in zip(pending, grader.grade(pending), strict=True):
                rec["grade"] = g.to_dict()
                emit(rec)
                seen.append(slim(rec))
            pending.clear()

        for rec in records:
            pending.append(rec)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    return summarize(seen)


def summary_of_file(path: str) -> dict[str, Any]:
    """Metrics over every record of an eval output file (after a resumed run)."""
    return summarize(slim(r.data) for r in iter_records([path]))
