"""The record schema (version 1). A record grows as it flows through the stages:

problem      {"id", "question", "answer", "source", "task", ...}       (thor data get / convert)
+ exec       {"exec": ExecResult}                                       (thor exec)
+ trajectory {"sample", "trajectory": Trajectory, "prompt_ids", "completion_ids",
              "completion_mask", "completion_logprobs", "error"}        (rollout: eval, gen, rl)
+ grade      {"grade": Grade}                                           (thor grade, thor eval)

Every stage passes through the fields it does not own and writes its own namespaced keys.
Stages keep records as plain dicts (so unknown fields survive) and use these types to build and
read the parts they own: ``Trajectory.from_dict(rec["trajectory"])``, ``grade.to_dict()``.

Token bookkeeping (token-in, token-out): ``prompt_ids + completion_ids`` are exactly the ids the
model was conditioned on / produced; ``completion_mask[i]`` is 1 for ids the policy sampled and
0 for everything else (spliced tool output, text another model such as TIRGen's critic wrote).
``len(completion_mask) == len(completion_ids)`` always. Nothing downstream re-tokenizes text.
Records with ids also carry ``token_source``: the fingerprint of the tokenizer that made them and
the sampling parameters their log-probs were taken under (``TokenSource``); ids from another
tokenizer are never reused.

Who wrote each token (``Turn.author``): ``policy`` (sampled by the model being run or trained),
``tool`` (tool output), ``critic`` (written by another model, e.g. TIRGen's critic) or ``data``
(given by a dataset). Two masks follow from it, and they differ on purpose:
- what SFT trains on: every turn that is not tool output, whoever wrote it (``Turn.learnable``);
- what counts as the policy's own sample (its log-probs, the RL loss mask): ``author == "policy"``
  only (``Turn.sampled``), so code a critic wrote is never taken for a policy sample.
A turn's ``author`` is written only when it is not the default for its kind (``tool`` for output
turns, ``policy`` otherwise), so records made before authors existed read the same.

The schema version (``Trajectory.v``) is checked on read: a record from a newer thor is refused
with a message, never half-understood.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from thor_cli.errors import InputError
from thor_cli.records.jsonl import get_field

SCHEMA_VERSION = 1

TurnKind = Literal["text", "code", "output"]
Author = Literal["policy", "tool", "critic", "data"]
AUTHORS: tuple[str, ...] = get_args(Author)
ExecStatus = Literal["ok", "error", "timeout", "memory", "killed", "sandbox_error"]
StopReason = Literal[
    "answer",  # the protocol's final answer was given (e.g. \boxed{} then EOS, or </answer>)
    "eos",  # the model stopped without a tool call
    "max_tokens",  # the completion token budget ran out
    "max_tool_calls",  # the tool-call budget ran out
    "context_overflow",  # the next step would not fit the model's context
    "round_done",  # continue_from(one_round=True) finished its one tool round
    "error",  # a backend or tool failure; see the record's "error"
    "abandoned",  # thor gen: the critic's cells for a step kept failing, the try was given up
]
EXEC_STATUSES: tuple[str, ...] = get_args(ExecStatus)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Problem:
    """A problem to solve. ``answer`` is the gold answer (None for unlabelled prompts)."""

    id: str
    question: str
    answer: str | None = None
    source: str = ""
    task: Literal["math", "code", "qa"] = "math"
    # code tasks: test code and the function under test (HumanEval/MBPP)
    tests: str | None = None
    entry_point: str | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any], *, path: str | None = None, line: int | None = None) -> Problem:
        rid = get_field(rec, "id", (str, int), path=path, line=line)
        question = get_field(rec, "question", str, path=path, line=line)
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, (str, int, float)):
            get_field(rec, "answer", str, path=path, line=line)  # raises with the right message
        return cls(
            id=str(rid), question=question, answer=None if answer is None else str(answer),
            source=str(rec.get("source", "")), task=rec.get("task", "math"),
            tests=rec.get("tests"), entry_point=rec.get("entry_point"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ExecResult:
    """What running one cell gave. The ``exec`` field of ``thor exec`` output."""

    status: ExecStatus
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # "ZeroDivisionError: division by zero", or why it was killed
    duration_ms: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:  # by hand: asdict's deep copy cost thor exec ~50 us a record
        return {"status": self.status, "stdout": self.stdout, "stderr": self.stderr, "error": self.error,
                "duration_ms": self.duration_ms, "truncated": self.truncated}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecResult:
        return _from_dict(cls, data)


@dataclass
class Turn:
    """One segment of a trajectory: model text, a code cell (model text too), or tool output.

    ``ids`` are the exact token ids of this segment; ``logprobs`` the sampling log-probs of
    policy-sampled ids (None for tool output, for text another author wrote, or when the backend
    gives none). ``author``: who wrote it (see the module docstring); None means the default for
    the kind (``tool`` for output, else ``policy``).
    """

    kind: TurnKind
    text: str
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    exec: dict[str, Any] | None = None  # on "output" turns: the ExecResult of the cell before it
    tool: str | None = None  # "python" | "search" on code/output turns
    author: Author | None = None

    def __post_init__(self) -> None:
        if self.author is not None and self.author not in AUTHORS:
            raise InputError(f"unknown author {self.author!r}", field="author",
                             hint=f"use one of: {', '.join(AUTHORS)}")
        if self.author == default_author(self.kind):
            self.author = None  # stored as the default: one spelling for each meaning

    @property
    def who(self) -> str:
        """The author, with the default for the kind filled in."""
        return self.author or default_author(self.kind)

    @property
    def sampled(self) -> bool:
        """The policy sampled these ids: their log-probs and the RL loss mask are the policy's."""
        return self.who == "policy"

    @property
    def learnable(self) -> bool:
        """SFT trains on it: everything but tool output, whoever wrote it."""
        return self.kind != "output"

    def to_dict(self) -> dict[str, Any]:
        # built by hand: dataclasses.asdict deep-copies every id list, which dominated engine time
        d: dict[str, Any] = {"kind": self.kind, "text": self.text, "ids": list(self.ids)}
        if self.logprobs is not None:
            d["logprobs"] = list(self.logprobs)
        if self.exec is not None:
            d["exec"] = dict(self.exec)
        if self.tool is not None:
            d["tool"] = self.tool
        if self.author is not None:
            d["author"] = self.author
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return _from_dict(cls, data)


def default_author(kind: str) -> str:
    return "tool" if kind == "output" else "policy"


@dataclass
class TokenSource:
    """Where a record's token ids came from: the ``token_source`` field of records with ids.

    ``tokenizer`` is ``tokenizer_fingerprint`` of the tokenizer that made every id (prompt, sampled
    and tool output alike); the sampling parameters are those the policy's log-probs were taken
    under (the trainer must compute its own log-probs the same way to compare them).
    """

    tokenizer: str
    temperature: float
    top_p: float = 1.0
    top_k: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSource:
        if not isinstance(data, dict) or not isinstance(data.get("tokenizer"), str):
            raise InputError("expected an object with a \"tokenizer\" fingerprint", field="token_source",
                             hint="write records with thor's rollout engine (--keep-ids), or drop the field")
        return _from_dict(cls, data)


@dataclass
class Retry:
    """A self-correction: the failed cell (and backed-off text) that was dropped, and why."""

    at_turn: int  # index in turns where the dropped text started
    dropped_text: str
    # empty when the record was written without token ids (--drop-ids); keyword-only so that it
    # can have a default here
    dropped_ids: list[int] = field(default_factory=list, kw_only=True)
    reason: str  # the failed cell's exec status, or "no_output"
    exec: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"at_turn": self.at_turn, "dropped_text": self.dropped_text, "dropped_ids": list(self.dropped_ids),
                "reason": self.reason, "exec": dict(self.exec) if self.exec is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Retry:
        return _from_dict(cls, data)


@dataclass
class Trajectory:
    """A model's attempt at a problem with tools: the ``trajectory`` field of a record."""

    protocol: str
    turns: list[Turn] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    final_answer: str | None = None
    stop_reason: StopReason = "eos"
    n_tool_calls: int = 0
    n_corrections: int = 0
    v: int = SCHEMA_VERSION

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.turns)

    @property
    def completion_ids(self) -> list[int]:
        return [i for t in self.turns for i in t.ids]

    @property
    def completion_mask(self) -> list[int]:
        """1 where the policy sampled the id (RL's loss mask, log-probs valid), else 0."""
        return [int(t.sampled) for t in self.turns for _ in t.ids]

    @property
    def learn_mask(self) -> list[int]:
        """1 where SFT trains on the id (everything but tool output), else 0."""
        return [int(t.learnable) for t in self.turns for _ in t.ids]

    @property
    def cells(self) -> list[tuple[Turn, dict[str, Any] | None]]:
        """(code turn, its exec result) pairs in order."""
        out: list[tuple[Turn, dict[str, Any] | None]] = []
        for i, t in enumerate(self.turns):
            if t.kind == "code":
                nxt = self.turns[i + 1] if i + 1 < len(self.turns) else None
                out.append((t, nxt.exec if nxt is not None and nxt.kind == "output" else None))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v, "protocol": self.protocol, "turns": [t.to_dict() for t in self.turns],
            "retries": [r.to_dict() for r in self.retries], "final_answer": self.final_answer,
            "stop_reason": self.stop_reason, "n_tool_calls": self.n_tool_calls,
            "n_corrections": self.n_corrections,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        v = data.get("v", SCHEMA_VERSION)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= SCHEMA_VERSION:
            raise InputError(f"schema version {v!r} is not one this thor reads (1..{SCHEMA_VERSION})",
                             field="trajectory.v",
                             hint="a newer thor wrote it: upgrade thor" if isinstance(v, int) and v > SCHEMA_VERSION
                             else "the record is damaged: rewrite it with thor")
        return cls(
            protocol=data.get("protocol", ""), turns=[Turn.from_dict(t) for t in data.get("turns", [])],
            retries=[Retry.from_dict(r) for r in data.get("retries", [])],
            final_answer=data.get("final_answer"), stop_reason=data.get("stop_reason", "eos"),
            n_tool_calls=data.get("n_tool_calls", 0), n_corrections=data.get("n_corrections", 0),
            v=data.get("v", SCHEMA_VERSION),
        )


@dataclass
class Grade:
    """The ``grade`` field: was the answer right, and how was it decided."""

    correct: bool
    pred: str | None
    gold: str | None
    method: str  # "math_verify" | "numeric" | "string" | "choice" | "code_tests" | "timeout" | "no_answer" ...
    detail: str | None = None  # e.g. the failing assertion of a code test

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("pred", "gold")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grade:
        return _from_dict(cls, data)
