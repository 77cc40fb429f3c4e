"""``thor data convert``: rows from any source -> problem records (id, question, answer, source, task).

Field names are mapped explicitly (``--question-field``, ``--answer-field``, ``--id-field``,
``--map new=old``) or found among common names. Answers become strings: ``27.0`` -> ``"27"``,
a one-element list -> its element, a GSM8K worked solution ``... #### 18`` -> ``"18"`` (the
full text is kept as ``solution``). A value that a mapping displaces is kept: the old
``answer`` as ``solution`` (when there is none), anything else as ``orig_<name>``. Ids are
generated as ``SOURCE/N`` (N counts from 0 per source) when the rows have none; an integer id
becomes ``SOURCE/ID``. Other fields
pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from thor_cli.data.readers import read_rows
from thor_cli.errors import InputError, UsageError
from thor_cli.records import InputRecord

QUESTION_FIELDS = ("question", "problem", "prompt", "query", "instruction", "text")
ANSWER_FIELDS = ("final_answer", "answer", "gold", "target", "label")
TASKS = ("math", "code", "qa")
_GSM8K_FINAL = re.compile(r"\n####\s*(\S.*?)\s*$", re.S)


def parse_maps(items: Iterable[str]) -> dict[str, str]:
    """``["question=problem", ...]`` -> ``{"question": "problem"}``."""
    out: dict[str, str] = {}
    for item in items:
        new, sep, old = item.partition("=")
        if not sep or not new.strip() or not old.strip():
            raise UsageError(f"--map {item!r}: expected NEW=OLD", "e.g. --map question=problem")
        out[new.strip()] = old.strip()
    return out


def _answer_text(value: Any, rec: InputRecord, field: str) -> str:
    if isinstance(value, bool) or isinstance(value, dict):
        raise InputError(f"expected a string or number, got {type(value).__name__}", path=rec.path,
                         line=rec.line, field=field, hint="map another field with --answer-field")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        if not value:
            raise InputError("empty list", path=rec.path, line=rec.line, field=field,
                             hint="give every row an answer, or pass --unlabelled")
        return ", ".join(_answer_text(v, rec, field) for v in value)
    m = _GSM8K_FINAL.search(value)
    return m.group(1).replace(",", "") if m else value


class Converter:
    """Maps rows to problem records; one instance per ``thor data convert`` run."""

    def __init__(self, *, question_field: str | None = None, answer_field: str | None = None,
                 id_field: str | None = None, source: str | None = None, task: str | None = None,
                 maps: dict[str, str] | None = None, unlabelled: str = "error") -> None:
        """``unlabelled``: what to do with a row without an answer: "error", "keep" or "skip"."""
        if task is not None and task not in TASKS:
            raise UsageError(f"--task {task}: unknown", f"choose one of: {', '.join(TASKS)}")
        self.maps = dict(maps or {})
        for target, flag in (("question", question_field), ("answer", answer_field)):
            if flag:
                self.maps[target] = flag
        self.id_field, self.source, self.task, self.unlabelled = id_field, source, task, unlabelled
        self._counters: dict[str, int] = {}
        self.skipped = 0

    def _apply_maps(self, rec: InputRecord) -> dict[str, Any]:
        data = dict(rec.data)
        values: dict[str, Any] = {}
        for new, old in self.maps.items():
            if old not in data:
                raise InputError("missing", path=rec.path, line=rec.line, field=old,
                                 hint=f"check the field name given for {new!r}; this row has: "
                                      f"{', '.join(list(data)[:12])}")
            values[new] = data[old]
        for old in self.maps.values():
            if old not in self.maps:
                data.pop(old, None)
        for new, value in values.items():
            if new in data and data[new] is not value:
                _keep_displaced(data, new)
            data[new] = value
        return data

    def convert(self, rec: InputRecord, default_source: str) -> dict[str, Any] | None:
        """The problem record for one row; None when the row is skipped (no answer, "skip")."""
        data = self._apply_maps(rec)
        qf = "question" if "question" in self.maps else next((f for f in QUESTION_FIELDS if f in data), None)
        if qf is None:
            raise InputError("missing", path=rec.path, line=rec.line, field="question",
                             hint=f"name the question field with --question-field; this row has: "
                                  f"{', '.join(list(data)[:12])}")
        question = data.pop(qf)
        if not isinstance(question, str) or not question.strip():
            got = "an empty string" if isinstance(question, str) else type(question).__name__
            raise InputError(f"expected a non-empty string, got {got}", path=rec.path, line=rec.line,
                             field=self.maps.get("question", qf), hint="map another field with --question-field")
        af = "answer" if "answer" in self.maps else next(
            (f for f in ANSWER_FIELDS if data.get(f) is not None), None)
        answer: str | None = None
        if af is not None and data.get(af) is not None:
            raw = data.pop(af)
            answer = _answer_text(raw, rec, self.maps.get("answer", af))
            if isinstance(raw, str) and answer != raw and "solution" not in data:
                data["solution"] = raw  # a GSM8K worked solution: keep the working
        elif self.unlabelled == "skip":
            self.skipped += 1
            return None
        elif self.unlabelled != "keep":
            field = self.maps.get("answer") or af or next((f for f in ANSWER_FIELDS if f in rec.data), "answer")
            what = "null" if field in rec.data else "missing"
            raise InputError(what, path=rec.path, line=rec.line, field=field,
                             hint="name the answer field with --answer-field; --unlabelled keeps rows "
                                  "without an answer, --skip-unlabelled drops them")
        src = self.source or (data.pop("source") if isinstance(data.get("source"), str) else default_source)
        data.pop("source", None)
        task = self.task or (data.get("task") if data.get("task") in TASKS else "math")
        data.pop("task", None)
        id_field = self.id_field or ("id" if data.get("id") is not None else None)
        if id_field is not None:
            rid = rec.data.get(id_field) if id_field not in data else data.pop(id_field)
            if not isinstance(rid, str | int) or isinstance(rid, bool):
                raise InputError("missing" if rid is None else f"expected a string or integer, got {type(rid).__name__}",
                                 path=rec.path, line=rec.line, field=id_field, hint="pick another --id-field")
            pid = rid if isinstance(rid, str) else f"{src}/{rid}"  # bare numbers are not unique across sets
        else:
            n = self._counters.get(src, 0)
            self._counters[src] = n + 1
            pid = f"{src}/{n}"
        head: dict[str, Any] = {"id": pid, "question": question}
        if answer is not None:
            head["answer"] = answer
        for name in ("id", "question", "answer"):
            if name in data:  # a field the problem fields displace (gsm8k's worked "answer")
                _keep_displaced(data, name)
        return {**head, "source": src, "task": task, **data}


def _keep_displaced(data: dict[str, Any], name: str) -> None:
    kept = "solution" if name == "answer" and "solution" not in data else f"orig_{name}"
    data[kept] = data.pop(name)


def _default_source(inp: str) -> str:
    if inp == "-":
        return "stdin"
    p = Path(inp)
    if p.exists():
        return p.stem if p.is_file() else p.name
    return inp.rsplit("/", 1)[-1]  # hub dataset "openai/gsm8k" -> "gsm8k"


def convert(inputs: Iterable[str], converter: Converter, *, split: str | None = None,
            limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Problem records from each input in turn; at most ``limit`` records written in total."""
    n = 0
    for inp in inputs:
        src = _default_source(inp)
        for rec in read_rows(inp, split):
            if limit is not None and n >= limit:
                return
            out = converter.convert(rec, src)
            if out is not None:
                n += 1
                yield out
