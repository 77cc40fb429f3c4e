"""Running the multi-stage filter (``filters.py``) over records and files: ``thor gen filter``.

:class:`FilterPipeline` takes batches of input records and gives back the survivors: filters 1-9
as records come (ungraded records of a batch are graded together first), then one sample per
problem once every record is in (only the best sample of each problem is held, so memory grows
with the number of problems, not of records), then the single-call draw. Without
``one_per_problem`` records stream straight through. :func:`run_filter` adds files: the input
stream and output (``records.stream``: ``NAME.part`` + rename, manifest, ``--shard`` by problem so a
problem's samples stay together), ``--rejected``, ``--cot-eval`` and ``--summary``.

There is no ``--resume``: the filter is fast (see bench/filter_bench.py) and, choosing one sample
per problem, cannot write anything before it has read everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from itertools import islice
from typing import Any

from thor_cli.errors import InputError, UsageError
from thor_cli.gen.filters import (
    CHECKS,
    FIELD,
    FILTERS,
    MALFORMED,
    FilterConfig,
    FilterContext,
    Funnel,
    Malformed,
    Rejection,
    Sample,
    keep_draw,
    problem_of,
    record_key,
)
from thor_cli.log import log
from thor_cli.records.jsonl import InputRecord, OutputSink, iter_records, write_json_atomic
from thor_cli.records.keys import config_hash
from thor_cli.records.stream import open_stream

GradeFn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]  # records -> their grade dicts
RejectFn = Callable[[dict[str, Any]], None]
Passed = tuple[dict[str, Any], str]  # a surviving record and its record key


class FilterPipeline:
    """Filters 1-11 over batches of records; :attr:`funnel` counts what each removed."""

    def __init__(self, cfg: FilterConfig, ctx: FilterContext | None = None, *, grade: GradeFn | None = None,
                 on_reject: RejectFn | None = None, skip_malformed: bool = False) -> None:
        self.cfg = cfg
        self.ctx = ctx or FilterContext()
        self.funnel = Funnel(cfg, self.ctx)
        self.grade = grade
        self.on_reject = on_reject
        self.skip_malformed = skip_malformed
        self._checks = [(n, CHECKS[n]) for n in FILTERS if n in CHECKS]
        self._passed = [n for n in FILTERS if self.funnel.enabled(n)]
        # one_per_problem: problem -> (rank, first-seen order, record, record key, executed cells)
        self._best: dict[str, tuple[tuple[int, int, str], int, dict[str, Any], str, int]] = {}

    def _reject(self, rec: dict[str, Any], why: Rejection) -> None:
        stage = self.funnel.stages[why.filter]
        stage.removed += 1
        stage.reasons[why.reason] += 1
        if self.on_reject is not None:
            rec[FIELD] = why.to_dict()
            self.on_reject(rec)

    def _read(self, batch: Iterable[InputRecord]) -> list[Sample]:
        samples = []
        for r in batch:
            self.funnel.stages[MALFORMED].n_in += 1
            try:
                samples.append(Sample(r.data))
            except Malformed as e:
                if not self.skip_malformed:
                    raise e.at(r.path, r.line) from None
                self._reject(r.data, Rejection(MALFORMED, "malformed", f'{r.where()}: field "{e.field}": {e.message}'))
        return samples

    def _grade(self, samples: list[Sample]) -> set[int]:
        """Grade the samples without a ``grade`` (only when ``correct`` is on); their indices."""
        todo = [i for i, s in enumerate(samples) if s.rec.get("grade") is None]
        if not todo or not self.funnel.enabled("correct"):
            return set()
        if self.grade is None:
            raise UsageError(f"{len(todo)} records have no grade", "grade them first (thor grade), or pass --no-correct")
        for i, g in zip(todo, self.grade([samples[i].rec for i in todo]), strict=True):
            samples[i].rec["grade"] = g
        return set(todo)

    def feed(self, batch: Iterable[InputRecord]) -> list[Passed]:
        """Run a batch through filters 1-9; what is final already (no one_per_problem) comes back."""
        samples = self._read(batch)
        graded_here = self._grade(samples)
        out: list[Passed] = []
        for idx, s in enumerate(samples):
            why = None
            for name, check in self._checks:
                stage = self.funnel.stages[name]
                stage.n_in += 1
                if stage.enabled:
                    found = check(s, self.cfg, self.ctx)
                    if found is not None:
                        why = Rejection(name, *found)
                        break
            if why is not None:
                self._reject(s.rec, why)
                continue
            key = record_key(s.rec, without=("grade",) if idx in graded_here else ())
            if not self.funnel.enabled("one_per_problem"):
                self.funnel.stages["one_per_problem"].n_in += 1
                out.extend(self._single_call(s.rec, key, s.n_executed))
                continue
            self._offer(s, key)
        return out

    def _offer(self, s: Sample, key: str) -> None:
        """Filter 10: keep the shortest sample of each problem; a tie goes to the smaller key."""
        self.funnel.stages["one_per_problem"].n_in += 1
        problem = problem_of(s.rec) or key
        rank = (0, s.n_tokens, key) if s.n_tokens is not None else (1, s.n_chars, key)
        held = self._best.get(problem)
        entry = (rank, len(self._best) if held is None else held[1], s.rec, key, s.n_executed)
        if held is None:
            self._best[problem] = entry
            return
        loser, winner = s.rec, held[3]
        if rank < held[0]:
            self._best[problem] = entry
            loser, winner = held[2], key
        self._reject(loser, Rejection("one_per_problem", "not_shortest",
                                      f"problem {problem[:80]!r}: a shorter sample was kept (key {winner})"))

    def _single_call(self, rec: dict[str, Any], key: str, executed: int) -> list[Passed]:
        """Filter 11: a sample with exactly one executed cell survives with probability ``keep``."""
        stage = self.funnel.stages["single_call"]
        stage.n_in += 1
        if stage.enabled and executed == 1 and not keep_draw(self.cfg.seed, key, self.cfg.single_call_keep):
            self._reject(rec, Rejection("single_call", "down_sampled",
                                        f"one executed cell; kept with p={self.cfg.single_call_keep}"))
            return []
        rec[FIELD] = {"passed": self._passed}
        return [(rec, key)]

    def finish(self) -> list[Passed]:
        """The best sample of each problem (in the order problems first came), through filter 11."""
        out: list[Passed] = []
        for _rank, _first, rec, key, executed in sorted(self._best.values(), key=lambda e: e[1]):
            out.extend(self._single_call(rec, key, executed))
        self._best.clear()
        return out

    def run(self, records: Iterable[InputRecord], batch: int = 256) -> Iterator[Passed]:
        it = iter(records)
        while chunk := list(islice(it, max(1, batch))):
            yield from self.feed(chunk)
        yield from self.finish()


def load_cot_solved(path: str) -> frozenset[str]:
    """Problem ids with at least one correct sample in a plain-CoT ``thor eval --no-tools`` output."""
    solved: set[str] = set()
    with_tools = 0
    for r in iter_records([path]):
        rid = r.require("id", (str, int))
        grade = r.require("grade", dict)
        if not isinstance(grade.get("correct"), bool):
            raise InputError("expected true or false", path=r.path, line=r.line, field="grade.correct",
                             hint="grade the file with thor grade")
        if grade["correct"]:
            solved.add(str(rid))
        traj = r.data.get("trajectory")
        with_tools += bool(isinstance(traj, dict) and traj.get("n_tool_calls"))
    if with_tools:
        log.warning("--cot-eval %s: %d records called tools; plain CoT is `thor eval --no-tools`", path, with_tools)
    return frozenset(solved)


def run_filter(inputs: list[str] | None, output: str = "-", cfg: FilterConfig | None = None, *,
               cot_eval: str | None = None, rejected: str | None = None, summary: str | None = None,
               shard: str | None = None, limit: int | None = None, skip_malformed: bool = False,
               grade_options: dict[str, Any] | None = None, batch: int = 256) -> Funnel:
    """Filter record files into ``output``; returns the funnel (also written to ``summary``)."""
    cfg = cfg or FilterConfig()
    cfg.check()
    if rejected is not None and rejected == output:
        raise UsageError(f"--rejected {rejected} is also the output", "write rejected records to another file")
    ctx = FilterContext(load_cot_solved(cot_eval) if cot_eval else None)
    grade_options = grade_options or {}
    config = {**cfg.to_dict(), "cot_eval": cot_eval, "cot_solved_problems": len(ctx.cot_solved or ()),
              "skip_malformed": skip_malformed, "grade": grade_options}
    chash = config_hash(config)
    with ExitStack() as stack:
        st = stack.enter_context(open_stream("filter", inputs, output, shard=shard, limit=limit, config=config,
                                             shard_unit=problem_of))
        rej = stack.enter_context(OutputSink(rejected, stage="filter")) if rejected else None
        graders: list[Any] = []

        def grade(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not graders:  # started on the first ungraded record: its worker processes cost a second
                from thor_cli.grading import GradeConfig, Grader

                graders.append(stack.enter_context(Grader(GradeConfig(**grade_options))))
                log.info("filter: grading records that have no grade")
            return [g.to_dict() for g in graders[0].grade(recs)]

        pipe = FilterPipeline(cfg, ctx, grade=grade, on_reject=rej.write if rej else None,
                              skip_malformed=skip_malformed)
        for rec, key in pipe.run(st.records, batch):
            st.emit(rec, hashlib.sha256(f"{key}:{chash}".encode()).hexdigest()[:20])
    funnel = pipe.funnel
    if summary:
        write_json_atomic(summary, {"stage": "filter", "read": funnel.read, "kept": funnel.kept,
                                    "order": [MALFORMED, *FILTERS], "funnel": funnel.rows(),
                                    "inputs": inputs or ["-"], "output": output, "rejected": rejected,
                                    "config": config, "config_hash": chash})
    return funnel
