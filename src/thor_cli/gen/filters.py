"""THOR's multi-stage filter for tool-integrated training data (``thor gen filter``), on records.

A record (from thor gen, eval or rl: ``trajectory``, usually ``grade``, ``id``) goes through the
filters in this fixed order; the first one that rejects it says why, and each counts what it
removed (:class:`Funnel`):

 1. ``correct``          ``grade.correct`` (records without a grade are graded first)
 2. ``executed``         every code cell ran and succeeded by the protocol's own failure rule
                         (error / timeout / killed / memory, or a python cell that printed nothing);
                         a cell with no output turn after it never ran and fails too
 3. ``boxed``            a non-empty final answer after the last tool output: ``\\boxed{}`` for THOR's
                         fences, ``<answer>…</answer>`` for protocols that close their answer with a tag
 4. ``length``           completion tokens within bounds when the record has ids, else characters
                         (the whole completion, tool output included: what an SFT example holds)
 5. ``code_quality``     at most ceil(0.4 n) of the n python cells have <= 5 code lines (or do not
                         parse), and some cell imports or calls a library or has a loop or branch
 6. ``repetition``       no character 20-gram more than 20 times in the model's text
 7. ``dollars``          even numbers of unescaped ``$`` and ``$$`` in the model's prose (code cells
                         are left out: ``print(f"${x}")`` is not LaTeX)
 8. ``language``         at most 5% of the model's letters outside the allowed scripts
 9. ``cot_solved``       the problem is not one plain CoT solved (``--cot-eval``)
10. ``one_per_problem``  per problem (``id``, else ``question``): the shortest sample, ties by key
11. ``single_call``      a sample with exactly one executed cell is kept with probability 0.5, decided
                         by a hash of (seed, record key): the same records whatever their order

Departures from the paper: it names its filters but not every threshold; the defaults here are
the ones in MISSION.md, and the length bounds (50 tokens / 200 characters) are thor's. Its
"stratify by number of calls and down-sample each subset" is the single-call rule alone.
``filter_run.py`` runs this over files; ``filter_checks.py`` holds the text and code checks.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from thor_cli.errors import InputError, UsageError
from thor_cli.gen import filter_checks as fc
from thor_cli.grading.extract import extract_boxed
from thor_cli.records.keys import KEYS_FIELD, content_key
from thor_cli.records.schema import ExecResult
from thor_cli.rollout.protocols import PROTOCOLS, ToolProtocol

FILTERS: tuple[str, ...] = ("correct", "executed", "boxed", "length", "code_quality", "repetition", "dollars",
                            "language", "cot_solved", "one_per_problem", "single_call")
MALFORMED = "malformed"  # not a filter: records that could not be read (--skip-malformed)
FIELD = "filter"  # what this stage writes on a record


@dataclass
class FilterConfig:
    """Every filter's switch and thresholds (the flags of ``thor gen filter``)."""

    correct: bool = True
    executed: bool = True
    silent_cells_fail: bool = True  # a python cell that printed nothing failed (the protocol's rule)
    count_retries: bool = False  # a self-corrected (dropped) cell fails the sample too
    boxed: bool = True
    length: bool = True
    min_tokens: int = 50
    max_tokens: int = 0  # 0: no upper bound
    min_chars: int = 200
    max_chars: int = 0
    code_quality: bool = True
    short_cell_lines: int = 5  # a cell with at most this many code lines is short (low quality)
    max_short_fraction: float = 0.4  # reject when more than ceil(fraction * n) cells are short
    lib_or_flow: bool = True  # some cell uses a library or has a loop / branch
    repetition: bool = True
    ngram: int = 20
    max_repeats: int = 20
    dollars: bool = True
    language: bool = True
    scripts: str = "latin,greek"  # Greek: math's letters (pi, theta) are Greek
    max_foreign: float = 0.05
    cot_solved: bool = True  # has effect only with a set of CoT-solved problems
    one_per_problem: bool = True
    single_call: bool = True
    single_call_keep: float = 0.5
    seed: int = 0

    def check(self) -> None:
        """Refuse values no filter can use (a usage error naming the flag)."""
        def bad(flag: str, why: str) -> UsageError:
            return UsageError(f"--{flag}: {why}", f"see thor gen filter --help for {flag}'s range")
        for name in ("min_tokens", "max_tokens", "min_chars", "max_chars", "short_cell_lines", "max_repeats"):
            if getattr(self, name) < 0:
                raise bad(name.replace("_", "-"), "must be 0 or more")
        if self.ngram < 1:
            raise bad("ngram", "must be 1 or more")
        for name in ("max_short_fraction", "max_foreign", "single_call_keep"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name.replace("_", "-"), "must be between 0 and 1")
        unknown = set(self.allowed_scripts) - fc.SCRIPTS
        if unknown:
            raise bad("scripts", f"unknown script {', '.join(sorted(unknown)).lower()}; "
                      f"known: {', '.join(sorted(fc.SCRIPTS)).lower()}")

    @cached_property
    def allowed_scripts(self) -> frozenset[str]:
        return frozenset(s.strip().upper() for s in self.scripts.split(",") if s.strip())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rejection:
    filter: str
    reason: str  # a short code, counted in the summary ("no_output", "short_cells" ...)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rejected_by": self.filter, "reason": self.reason, "detail": self.detail}


class Malformed(Exception):
    """A record this filter cannot read; ``field`` is the dotted path of the bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def at(self, path: str, line: int) -> InputError:
        return InputError(self.message, path=path, line=line, field=self.field,
                          hint="fix or drop the record, or pass --skip-malformed to count it as rejected")


def _need(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise Malformed(field, message)


def problem_of(rec: dict[str, Any]) -> str | None:
    """What counts as one problem: ``id``, else the ``question`` text."""
    if rec.get("id") is not None:
        return str(rec["id"])
    q = rec.get("question")
    return q if isinstance(q, str) else None


class Sample:
    """One record's trajectory, checked once and read by the filters (texts joined when needed)."""

    def __init__(self, rec: dict[str, Any]) -> None:
        traj = rec.get("trajectory")
        _need("trajectory" in rec, "trajectory", "missing (a record from thor gen, eval or rl has one)")
        _need(isinstance(traj, dict), "trajectory", f"expected an object, got {type(traj).__name__}")
        assert isinstance(traj, dict)
        name = traj.get("protocol") or "thor"
        _need(name in PROTOCOLS, "trajectory.protocol", f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
        turns = traj.get("turns")
        _need(isinstance(turns, list), "trajectory.turns", "expected a list of turns")
        assert isinstance(turns, list)
        self.rec = rec
        self.proto: ToolProtocol = PROTOCOLS[name]
        self.turns: list[dict[str, Any]] = turns
        self.retries = traj.get("retries") or []
        _need(isinstance(self.retries, list), "trajectory.retries", "expected a list")
        self.code_at: list[int] = []  # indices of code turns
        self.last_output = -1
        n_ids = 0
        for i, t in enumerate(turns):
            where = f"trajectory.turns[{i}]"
            _need(isinstance(t, dict), where, "expected an object")
            kind = t.get("kind")
            _need(kind in ("text", "code", "output"), f"{where}.kind", f"expected text, code or output, got {kind!r}")
            _need(isinstance(t.get("text"), str), f"{where}.text", "expected a string")
            ids = t.get("ids")
            _need(ids is None or isinstance(ids, list), f"{where}.ids", "expected a list of token ids")
            n_ids += len(ids or ())
            if kind == "code":
                self.code_at.append(i)
            elif kind == "output":
                self.last_output = i
                ex = t.get("exec")
                _need(ex is None or (isinstance(ex, dict) and isinstance(ex.get("status", "ok"), str)),
                      f"{where}.exec", "expected an object with a string status")
        ids = rec.get("completion_ids")
        _need(ids is None or isinstance(ids, list), "completion_ids", "expected a list of token ids")
        self.n_tokens: int | None = len(ids) if ids is not None else (n_ids or None)
        grade = rec.get("grade")
        _need(grade is None or (isinstance(grade, dict) and isinstance(grade.get("correct"), bool)),
              "grade.correct", "expected true or false (regrade with thor grade)")
        rid = rec.get("id")
        _need(rid is None or (isinstance(rid, (str, int)) and not isinstance(rid, bool)), "id",
              "expected a string or an integer")

    @cached_property
    def model_text(self) -> str:
        """What the model (or a critic) wrote: text and code turns, tool output left out."""
        return "".join(t["text"] for t in self.turns if t["kind"] != "output")

    @cached_property
    def prose(self) -> str:
        return "".join(t["text"] for t in self.turns if t["kind"] == "text")

    @cached_property
    def n_chars(self) -> int:
        return sum(len(t["text"]) for t in self.turns)

    def cell_exec(self, i: int) -> dict[str, Any] | None:
        """The exec result of the code turn at ``i``; None when no output turn follows it."""
        nxt = self.turns[i + 1] if i + 1 < len(self.turns) else None
        if nxt is None or nxt["kind"] != "output":
            return None
        return nxt.get("exec") or {}

    def tool_of(self, i: int) -> str:
        nxt = self.turns[i + 1] if i + 1 < len(self.turns) else {}
        return str(self.turns[i].get("tool") or nxt.get("tool") or "python")

    @property
    def n_executed(self) -> int:
        return sum(self.cell_exec(i) is not None for i in self.code_at)

    def python_code(self) -> list[str]:
        """The code of every python cell, read with the protocol's own call parser."""
        out = []
        for i in self.code_at:
            if self.tool_of(i) != "python":
                continue
            text = self.turns[i]["text"]
            stop = next((s for s in self.proto.call_stops if s in text), self.proto.call_stops[0])
            call = self.proto.parse_call(text, stop)
            out.append(call.arg if call.error is None else "")
        return out


Check = Callable[[Sample, FilterConfig, "FilterContext"], "tuple[str, str] | None"]


@dataclass
class FilterContext:
    """What some filters need beyond the record: the CoT-solved problems (``--cot-eval``)."""

    cot_solved: frozenset[str] | None = None


def _correct(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    g = s.rec.get("grade") or {}
    if g.get("correct") is True:
        return None
    return str(g.get("method") or "wrong"), f"pred {g.get('pred')!r}, gold {g.get('gold')!r}"


def _executed(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    n = len(s.code_at)
    for k, i in enumerate(s.code_at, 1):
        ex = s.cell_exec(i)
        if ex is None:
            return "not_run", f"cell {k} of {n} has no output turn"
        res = ExecResult(status=ex.get("status", "ok"), stdout=str(ex.get("stdout") or ""))
        why = s.proto.failure(s.tool_of(i), res)
        if why == "no_output" and not cfg.silent_cells_fail:
            why = None
        if why is not None:
            err = str(ex.get("error") or "")[:120]
            return why, f"cell {k} of {n}: {why}" + (f" ({err})" if err else "")
    if cfg.count_retries and s.retries:
        return "retried", f"{len(s.retries)} self-corrected cell(s)"
    return None


_ANSWER_CLOSED = re.compile(r"<answer>(.*?)</answer>", re.S)


def _boxed(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    tail = "".join(t["text"] for t in s.turns[s.last_output + 1:] if t["kind"] != "output")
    stops = s.proto.answer_stops
    if stops:  # the protocol gives its answer in a tag it closes (TAPO's <answer>…</answer>)
        if not any(stop in tail for stop in stops):
            return "no_answer", f"no {stops[0]} after the last tool output"
        tags = _ANSWER_CLOSED.findall(tail)
        inner = tags[-1] if tags else ""
        boxed = extract_boxed(inner)  # a \boxed{} inside the tag is the answer, as the grader reads it
        ans = inner if boxed is None else boxed
    else:
        boxed = extract_boxed(tail)
        if boxed is None:
            return "no_answer", "no \\boxed{} after the last tool output"
        ans = boxed
    return ("empty_answer", "the final answer is empty") if not ans.strip() else None


def _bounds(n: int, lo: int, hi: int, unit: str) -> tuple[str, str] | None:
    if n < lo:
        return "too_short", f"{n} {unit} < {lo}"
    if hi and n > hi:
        return "too_long", f"{n} {unit} > {hi}"
    return None


def _length(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    if s.n_tokens is not None:
        return _bounds(s.n_tokens, cfg.min_tokens, cfg.max_tokens, "tokens")
    return _bounds(s.n_chars, cfg.min_chars, cfg.max_chars, "chars")


def _code_quality(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    cells = [fc.read_cell(code) for code in s.python_code()]
    n = len(cells)
    if n == 0:
        return "no_cells", "no python cell"
    short = sum(c.tree is None or c.lines <= cfg.short_cell_lines for c in cells)
    allowed = fc.max_short_cells(n, cfg.max_short_fraction)
    if short > allowed:
        return "short_cells", (f"{short} of {n} cells have <= {cfg.short_cell_lines} code lines or do not "
                               f"parse (at most {allowed} may)")
    if cfg.lib_or_flow and not fc.library_or_flow(cells):
        return "no_library_or_flow", "no cell imports or calls a library, loops or branches"
    return None


def _repetition(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    found = fc.repeated_ngram(s.model_text, cfg.ngram, cfg.max_repeats)
    if found is None:
        return None
    return "repeated_ngram", f"{found[0]!r} x{found[1]}"


def _dollars(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    inline, display = fc.dollar_delimiters(s.prose)
    if inline % 2 or display % 2:
        return "odd_dollars", f"{inline} $ and {display} $$ delimiters"
    return None


def _language(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    foreign, letters, script = fc.foreign_letters(s.model_text, cfg.allowed_scripts)
    if letters and foreign > cfg.max_foreign * letters:
        return "script", f"{foreign} of {letters} letters are {str(script).lower()}"
    return None


def _cot_solved(s: Sample, cfg: FilterConfig, ctx: FilterContext) -> tuple[str, str] | None:
    rid = s.rec.get("id")
    if ctx.cot_solved is not None and rid is not None and str(rid) in ctx.cot_solved:
        return "cot_solved", f"plain CoT solved {rid}"
    return None


CHECKS: dict[str, Check] = {  # filters 1-9: one record at a time, in FILTERS order
    "correct": _correct, "executed": _executed, "boxed": _boxed, "length": _length,
    "code_quality": _code_quality, "repetition": _repetition, "dollars": _dollars, "language": _language,
    "cot_solved": _cot_solved,
}


@dataclass
class Stage:
    """One row of the funnel."""

    name: str
    enabled: bool
    n_in: int = 0
    removed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def n_out(self) -> int:
        return self.n_in - self.removed

    def to_dict(self) -> dict[str, Any]:
        kept = 100.0 * self.n_out / self.n_in if self.n_in else None
        return {"filter": self.name, "enabled": self.enabled, "in": self.n_in, "removed": self.removed,
                "out": self.n_out, "kept_pct": None if kept is None else round(kept, 2),
                "reasons": dict(sorted(self.reasons.items()))}


class Funnel:
    """How many records each filter saw and removed, in order (``malformed`` first)."""

    def __init__(self, cfg: FilterConfig, ctx: FilterContext) -> None:
        on = {name: bool(getattr(cfg, name)) for name in FILTERS}
        on["cot_solved"] = cfg.cot_solved and ctx.cot_solved is not None
        on["single_call"] = cfg.single_call and cfg.single_call_keep < 1.0
        self.stages = {MALFORMED: Stage(MALFORMED, True)} | {n: Stage(n, on[n]) for n in FILTERS}

    def enabled(self, name: str) -> bool:
        return self.stages[name].enabled

    @property
    def read(self) -> int:
        return self.stages[MALFORMED].n_in

    @property
    def kept(self) -> int:
        return self.stages[FILTERS[-1]].n_out

    def rows(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stages.values()]


def record_key(rec: dict[str, Any], *, without: tuple[str, ...] = ()) -> str:
    """The record's own content key (its JSON, without ``keys`` and ``without``): what ties and the
    single-call draw are decided by, so neither depends on record order nor on this run's flags."""
    return content_key({k: v for k, v in rec.items() if k not in without and k != KEYS_FIELD})


def keep_draw(seed: int, key: str, keep: float) -> bool:
    """A uniform draw in [0, 1) from (seed, key), below ``keep``: the same answer on every run.

    >>> keep_draw(0, "abc", 1.0), keep_draw(0, "abc", 0.0)
    (True, False)
    """
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64 < keep
