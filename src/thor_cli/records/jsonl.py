"""Streaming JSONL: read records from files or stdin, write whole lines, resume, manifests.

Conventions (STYLE.md): ``-`` means stdin/stdout; several inputs concatenate; records are written
one whole line at a time and flushed; unknown fields pass through untouched.

Output files are written under ``NAME.part`` and renamed to ``NAME`` when the run completes, so a
file under its final name is always whole. A killed or failed run leaves ``NAME.part``; rerun
with ``--resume`` to continue from it (a torn last line is dropped).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from thor_cli.errors import InputError, PipeClosed, UsageError
from thor_cli.records.keys import KEYS_FIELD, canonical_json

MAX_LINE_BYTES = int(float(os.environ.get("THOR_MAX_LINE_MB", "32")) * 1024 * 1024)


@dataclass
class InputRecord:
    """One record as read, with where it came from (for error messages)."""

    data: dict[str, Any]
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def require(self, field: str, kind: type | tuple[type, ...] = str) -> Any:
        return get_field(self.data, field, kind, path=self.path, line=self.line)

    def optional(self, field: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if self.data.get(field) is None:
            return default
        return get_field(self.data, field, kind, path=self.path, line=self.line)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "an object"}


def get_field(record: dict[str, Any], field: str, kind: type | tuple[type, ...] = str, *,
              path: str | None = None, line: int | None = None) -> Any:
    """``record[field]`` checked against ``kind``; an InputError naming file, line and field if not."""
    if field not in record:
        raise InputError("missing", path=path, line=line, field=field,
                         hint=f'add "{field}" to every record (or map it with thor data convert)')
    value = record[field]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        want = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        got = type(value).__name__ if value is not None else "null"
        raise InputError(f"expected {want}, got {got}", path=path, line=line, field=field,
                         hint="fix the record or the field mapping")
    return value


def loads_line(raw: bytes, *, path: str = "<string>", line: int = 1) -> dict[str, Any]:
    """Parse one JSONL line into a dict, with a clear error naming the file and line."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        reason = str(e)
        if "utf-8" in reason.lower() or "surrogate" in reason.lower():
            raise InputError("not valid UTF-8", path=path, line=line,
                             hint="re-encode the file as UTF-8") from None
        if not raw.endswith(b"\n"):
            raise InputError(f"truncated or invalid JSON at end of input ({reason})", path=path, line=line,
                             hint="the last line is incomplete; was the writer killed? remove the line "
                                  "or rerun the producing step with --resume") from None
        raise InputError(f"not valid JSON ({reason})", path=path, line=line,
                         hint="each line must be one JSON object") from None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", path=path, line=line,
                         hint="each line must be one JSON object such as {\"question\": ...}")
    return data


def dumps_line(record: dict[str, Any]) -> bytes:
    """One record as one line of JSON (UTF-8, newline-terminated)."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as e:
        raise InputError(f"record cannot be written as JSON ({e})") from None


def _open_input(path: str) -> tuple[IO[bytes], str]:
    if path == "-":
        if sys.stdin is None:
            raise UsageError("no input", "pass a file, or pipe records into the command")
        if sys.stdin.isatty():
            raise UsageError("no input: standard input is a terminal",
                             "pass a JSONL file, or pipe records in (e.g. thor data get gsm8k | ...)")
        return sys.stdin.buffer, "<stdin>"
    p = Path(path)
    if not p.exists():
        raise UsageError(f"input file not found: {path}", "check the path")
    if p.is_dir():
        raise UsageError(f"input is a folder: {path}", "pass a JSONL file (thor data convert reads folders)")
    return open(p, "rb"), path  # noqa: SIM115 -- closed by iter_records


def iter_records(paths: Iterable[str] = ("-",)) -> Iterator[InputRecord]:
    """Records from each path in turn (``-`` is stdin); blank lines are skipped.

    Raises InputError at the first bad line: invalid JSON, invalid UTF-8, a torn last line, a
    line that is not an object, or a line longer than THOR_MAX_LINE_MB (default 32 MiB).
    """
    for path in paths:
        stream, name = _open_input(path)
        try:
            lineno = 0
            while True:
                raw = stream.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    break
                lineno += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise InputError(f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB", path=name,
                                     line=lineno, hint="set THOR_MAX_LINE_MB higher if this is intended")
                if not raw.strip():
                    continue
                yield InputRecord(loads_line(raw, path=name, line=lineno), name, lineno)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


def _drop_torn_tail(path: Path) -> int:
    """Truncate a partial last line (no newline, or not valid JSON); return bytes dropped."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        # find the start of the last line
        block = min(size, 1 << 20)
        end = size
        f.seek(end - 1)
        last_byte = f.read(1)
        pos = size - 1 if last_byte == b"\n" else size
        # walk back to the previous newline
        start = pos
        while start > 0:
            step = min(block, start)
            f.seek(start - step)
            chunk = f.read(step)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                start = start - step + idx + 1
                break
            start -= step
        f.seek(start)
        tail = f.read(end - start)
        keep = True
        if not tail.endswith(b"\n"):
            keep = False
        else:
            try:
                orjson.loads(tail)
            except orjson.JSONDecodeError:
                keep = False
        if keep:
            return 0
        f.truncate(start)
        return end - start


class OutputSink:
    """Where a stage's records go: stdout, or a file written as ``NAME.part`` then renamed.

    ``resume=True`` continues an earlier run's output (``NAME.part``, or a finished ``NAME``, which
    stays in place until the resumed run completes) and exposes the content keys already written
    in :attr:`done` so the stage can skip them. Records that failed (a non-empty ``error``) are
    dropped from the continued output and not counted as done: a resumed run retries them.
    """

    def __init__(self, path: str = "-", *, resume: bool = False, stage: str = "") -> None:
        self.path = path
        self.stage = stage
        self.done: set[str] = set()
        self.retried = 0  # failed records dropped on resume, to be run again
        self.written = 0
        self.dropped_bytes = 0
        self._file: IO[bytes] | None = None
        if path == "-":
            if resume:
                raise UsageError("--resume needs an output file", "add -o FILE")
            self._out = sys.stdout.buffer
            return
        final = Path(path)
        if final.is_dir():
            raise UsageError(f"output is a folder: {path}", "pass a file name to -o")
        final.parent.mkdir(parents=True, exist_ok=True)
        self.part = final.with_name(final.name + ".part")
        if resume:
            if final.exists() and not self.part.exists():
                shutil.copyfile(final, self.part)  # NAME stays whole if the resumed run fails
            if self.part.exists():
                self.dropped_bytes = _drop_torn_tail(self.part)
                self.done, self.retried = self._read_keys(self.part)
            self._file = open(self.part, "ab")  # noqa: SIM115
        else:
            self._file = open(self.part, "wb")  # noqa: SIM115
        self._out = self._file

    def _read_keys(self, path: Path) -> tuple[set[str], int]:
        """Keys of the records already done; failed records are removed from the file (retried).
        The file is rewritten only when some failed (a big output is not copied on every resume);
        every line ends in a newline here (_drop_torn_tail ran first)."""
        keys: set[str] = set()
        failed: list[int] = []  # their line numbers
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                rec = loads_line(raw, path=str(path), line=lineno)
                if rec.get("error"):
                    failed.append(lineno)
                    continue
                key = (rec.get(KEYS_FIELD) or {}).get(self.stage)
                if key:
                    keys.add(key)
        if failed:
            drop = set(failed)
            tmp = path.with_name(path.name + ".tmp")
            with open(path, "rb") as f, open(tmp, "wb") as kept:
                kept.writelines(raw for lineno, raw in enumerate(f, 1) if raw.strip() and lineno not in drop)
            os.replace(tmp, path)
        return keys, len(failed)

    def write(self, record: dict[str, Any]) -> None:
        """Write one whole line and flush. Raises PipeClosed when stdout's reader went away."""
        try:
            self._out.write(dumps_line(record))
            self._out.flush()
        except BrokenPipeError:
            raise PipeClosed() from None
        self.written += 1

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def commit(self) -> None:
        """The run finished: make the output visible under its final name."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self.part, self.path)

    def abort(self) -> None:
        """The run failed: keep what was written in NAME.part for --resume."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> OutputSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write a non-stream file (manifest, summary, checkpoint index) via a temp name + rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_atomic(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


__all__ = ["InputRecord", "OutputSink", "canonical_json", "dumps_line", "get_field", "iter_records",
           "loads_line", "write_atomic", "write_json_atomic"]
