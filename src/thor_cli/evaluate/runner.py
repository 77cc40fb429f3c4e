"""``thor eval``: problems -> k samples each through the rollout engine -> graded records -> metrics.

Runs on the stage runner (``thor_cli.stages``): one record per (problem, sample), keyed
``content_key(problem, config, stage="eval", sample=s)`` so ``--resume`` skips finished samples and
``--shard i/n`` splits problems (not samples) across processes; ``evaluate`` owns the run's
``RunSession``. Grading happens as each sample finishes (math in the grader pool, code tests in a
sandbox pool started on the first code problem). ``grade_only`` re-grades existing records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from thor_cli.errors import UsageError
from thor_cli.evaluate.metrics import slim, summarize
from thor_cli.grading import GradeConfig, Grader, graded_in_batches
from thor_cli.records.access import benchmark_of, drop_ids
from thor_cli.records.jsonl import OutputSink, iter_records
from thor_cli.records.shard import Shard
from thor_cli.stages import RunOptions, RunSession, Sample, load_problems, merge, run_samples

STAGE = "eval"


@dataclass
class EvalOptions:
    samples: int = 4
    concurrency: int = 64
    grade: GradeConfig = field(default_factory=GradeConfig)
    model: str = ""
    keep_ids: bool = False  # keep token ids/masks/log-probs in the records (the engine always makes them)
    key_config: dict[str, Any] = field(default_factory=dict)  # what determines results (content keys)


async def run_eval(problems: Iterable[dict[str, Any]], engine: Any, sink: OutputSink, opts: EvalOptions, *,
                   shard: Shard | None = None, emit: Callable[[dict[str, Any]], None] | None = None,
                   sandbox: Any = None) -> dict[str, Any]:
    """Roll out, grade and write every (problem, sample) not already in ``sink``; return the summary
    of this run's records plus those already in the sink (resume). ``sandbox``: a started pool that
    code tests share with the python tool (else one is started on the first code problem)."""
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    finished_at: dict[str, float] = {}

    with Grader(opts.grade, sandbox=sandbox) as grader:
        async def finish(unit: Sample, fields: dict[str, Any]) -> dict[str, Any]:
            tokens = len(fields.get("completion_ids") or [])
            # only what the engine added is dropped: a prompt_ids the problem came with stays
            rec = merge(unit.problem, fields if opts.keep_ids else drop_ids(fields))
            rec["sample"] = unit.index
            rec["eval"] = {"model": opts.model, "wall_s": round(unit.wall_s, 3), "tokens": tokens}
            rec["grade"] = (await grader.agrade([rec]))[0].to_dict()
            seen.append(slim(rec))
            finished_at[benchmark_of(rec)] = time.monotonic() - started
            return rec

        try:
            await run_samples(problems, engine, stage=STAGE, samples=opts.samples, key_config=opts.key_config,
                              emit=emit or sink.write, finish=finish, done=sink.done, shard=shard,
                              concurrency=opts.concurrency)
        finally:
            await grader.aclose()
    return summarize(seen, wall_s=finished_at)


async def evaluate(problems: Iterable[dict[str, Any]], run: RunOptions, opts: EvalOptions, sink: OutputSink, *,
                   shard: Shard | None = None) -> dict[str, Any]:
    """``thor eval`` as a library call: a ``RunSession`` for ``run`` (its one sandbox pool also runs
    the code tests), ``run_eval`` into ``sink``; returns the summary of this run's records."""
    async with RunSession(run) as session:
        return await run_eval(problems, session.engine, sink, opts, shard=shard, sandbox=session.pool)


def run_file(run: RunOptions | None, opts: EvalOptions, *, inputs: list[str] | None, benchmarks: list[str],
             output: str = "-", resume: bool = False, shard: str | None = None,
             limit: int | None = None) -> dict[str, Any]:
    """``thor eval`` end to end: problems (``benchmarks``, else the JSONL ``inputs``) through
    ``evaluate`` into ``output`` (NAME.part, manifest, --resume, --shard: ``records.stream``), or,
    with ``run=None`` (``--grade-only``), the ``inputs`` re-graded. Returns the summary; after a
    resumed run it covers every record of the output file."""
    import itertools

    from thor_cli import aio
    from thor_cli.records.shard import parse_shard, shard_from_env
    from thor_cli.records.stream import open_sink

    if run is None:
        sink = OutputSink(output)
        result = grade_only((r.data for r in itertools.islice(iter_records(inputs or ["-"]), limit)), opts, sink.write)
        sink.commit()
        return result
    if not run.model:
        raise UsageError("--model is needed to run an evaluation", "pass --model NAME, or --grade-only")
    if opts.samples < 1:
        raise UsageError("--samples must be >= 1", "pass e.g. --samples 4")
    key_config = run.key_config()
    opts = replace(opts, key_config=key_config)
    problems = load_problems(benchmarks, inputs, limit)
    sh = parse_shard(shard) if shard else shard_from_env()
    with open_sink(STAGE, output, resume=resume, shard=sh,
                   config={**key_config, "samples": opts.samples, "benchmarks": benchmarks}) as sink:
        result = aio.run(evaluate(problems, run, opts, sink, shard=sh))
    if resume and output != "-":
        walls = {n: m.get("wall_s") for n, m in result["benchmarks"].items()}
        result = summary_of_file(output)
        for n, m in result["benchmarks"].items():
            m["wall_s"] = walls.get(n)
    result["config"] = {**key_config, "samples": opts.samples}
    return result


def grade_only(records: Iterable[dict[str, Any]], opts: EvalOptions, emit: Callable[[dict[str, Any]], None],
               batch: int = 256) -> dict[str, Any]:
    """Re-grade existing eval records (no model) and recompute the summary."""
    seen: list[dict[str, Any]] = []
    with Grader(opts.grade) as grader:
        for rec, g in graded_in_batches(records, grader.grade, record=lambda r: r, batch=batch):
            rec["grade"] = g.to_dict()
            emit(rec)
            seen.append(slim(rec))
    return summarize(seen)


def summary_of_file(path: str) -> dict[str, Any]:
    """Metrics over every record of an eval output file (after a resumed run)."""
    return summarize(slim(r.data) for r in iter_records([path]))
