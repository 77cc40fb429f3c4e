"""What ``thor show --html`` reads: each input classified by its content and given a run label.

An input is ``PATH`` or ``LABEL=PATH``. Kinds, decided from the file itself (never the name alone):

- ``trajectories``: JSONL records with ``trajectory``, ``grade`` or ``question`` (``thor eval``,
  ``thor gen``, ``thor grade`` output);
- ``metrics``: JSONL lines with an integer ``step`` and no trajectory (``DIR/metrics.jsonl`` of
  ``thor sft`` / ``thor rl``); a folder holding ``metrics.jsonl`` is read as that file;
- ``eval_summary``: a JSON object with ``benchmarks`` (``thor eval --summary``);
- ``funnel``: a JSON object with ``funnel`` (``thor gen filter --summary``).

Default labels: the file name without ``.jsonl`` / ``.summary.json`` / ``.json``; for a
``metrics.jsonl`` the name of its folder (``runs/demo/rl/metrics.jsonl`` -> ``rl``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from thor_cli.errors import InputError, UsageError

Kind = Literal["trajectories", "metrics", "eval_summary", "funnel"]
KINDS_HELP = ("a trajectory JSONL (thor eval / gen / grade), a metrics.jsonl (thor sft / rl), an eval "
              "summary JSON (thor eval --summary) or a filter summary JSON (thor gen filter --summary)")


@dataclass(frozen=True)
class Input:
    path: str
    label: str
    kind: Kind
    data: dict[str, Any] | None = None  # the parsed object, for the JSON kinds


def split_label(arg: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` -> (LABEL, PATH); a plain path (even one with ``=`` in it, if it exists) -> (None, path)."""
    if "=" in arg and not Path(arg).exists():
        label, path = arg.split("=", 1)
        if label and path:
            return label, path
    return None, arg


def _kind_of_record(rec: dict[str, Any]) -> Kind | None:
    if isinstance(rec.get("funnel"), list):
        return "funnel"
    if isinstance(rec.get("benchmarks"), dict):
        return "eval_summary"
    if any(k in rec for k in ("trajectory", "grade", "question", "problem")):
        return "trajectories"
    if isinstance(rec.get("step"), int) and not isinstance(rec.get("step"), bool):
        return "metrics"
    return None


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                return raw
    return b""


def classify(path: str) -> tuple[Kind, dict[str, Any] | None, str]:
    """The kind of ``path`` (and the parsed object for JSON summaries, and the file to read)."""
    p = Path(path)
    if p.is_dir():
        if (p / "metrics.jsonl").is_file():
            return "metrics", None, str(p / "metrics.jsonl")
        raise UsageError(f"{path}: a folder without metrics.jsonl",
                         f"pass a file: {KINDS_HELP}")
    if not p.is_file():
        raise UsageError(f"input file not found: {path}", "check the path")
    first = _first_line(p)
    if not first:
        raise InputError("empty file", path=path, hint=f"pass {KINDS_HELP}")
    obj: Any
    try:
        obj = orjson.loads(first)
        whole = False
    except orjson.JSONDecodeError:
        try:  # an indented JSON document (summaries are written with indent=2)
            obj = orjson.loads(p.read_bytes())
            whole = True
        except orjson.JSONDecodeError as e:
            raise InputError(f"neither JSONL nor a JSON document ({e})", path=path, line=1,
                             hint=f"pass {KINDS_HELP}") from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=1,
                         hint=f"pass {KINDS_HELP}")
    kind = _kind_of_record(obj)
    if kind is None:
        raise InputError("cannot tell what this file is (no trajectory, grade, question, step, "
                         "benchmarks or funnel field)", path=path, line=None if whole else 1,
                         hint=f"pass {KINDS_HELP}")
    if kind in ("funnel", "eval_summary"):  # indented, or written on one line: obj is the whole summary
        return kind, obj, path
    if whole:
        raise InputError(f"a JSON document that looks like {kind} records", path=path,
                         hint="write records one per line (JSONL)")
    return kind, None, path


def default_label(path: str, kind: Kind) -> str:
    p = Path(path)
    if kind == "metrics" and p.name == "metrics.jsonl":
        return p.parent.name or "metrics"
    name = p.name
    for suffix in (".summary.json", ".jsonl", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def resolve_inputs(args: list[str]) -> list[Input]:
    """Classify every ``[LABEL=]PATH``; two inputs of one kind with one label are an error."""
    if not args:
        raise UsageError("thor show --html needs inputs", f"pass {KINDS_HELP}")
    out: list[Input] = []
    seen: dict[tuple[str, str], str] = {}
    for arg in args:
        label, path = split_label(arg)
        kind, data, real = classify(path)
        label = label or default_label(real, kind)
        key = (kind, label)
        if key in seen:
            raise UsageError(f"two {kind} inputs labelled {label!r}: {seen[key]} and {path}",
                             "name them: LABEL=PATH (e.g. base=runs/a/eval.jsonl sft=runs/b/eval.jsonl)")
        seen[key] = path
        out.append(Input(real, label, kind, data))
    return out
