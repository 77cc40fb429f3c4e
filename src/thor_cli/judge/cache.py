"""The judge's cache: one JSONL line per judgement, keyed by ``prompt.content_key``.

Append-only: a judgement is written (and flushed) once the judge gave it, so an interrupted run
keeps what it paid for and a rerun asks only what is missing. Only valid verdicts are stored: an
``invalid`` reply (no VERDICT line, a backend error) is asked again next time. A torn last line
(a crash mid-write) is ignored and cut off before the next append; any other bad line is an error naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thor_cli.errors import InputError


def default_cache_path() -> Path:
    from thor_cli.models.registry import thor_home

    return thor_home() / "judge_cache.jsonl"


class JudgeCache:
    """``get(key)`` -> the stored entry or None; ``put(key, entry)`` appends it to the file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.entries: dict[str, dict[str, Any]] = {}
        self._torn_at: int | None = None  # byte offset of a torn last line, cut before the next append
        self._newline_first = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        tail_at = len(text[:text.rfind("\n") + 1].encode("utf-8"))  # where a last unterminated line starts
        lines = text.split("\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
                if entry.get("verdict") not in ("yes", "no"):
                    raise KeyError("verdict")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                if n == len(lines):  # the torn tail of an interrupted write
                    self._torn_at = tail_at
                    continue
                raise InputError(f"not a judge cache entry ({e})", path=str(self.path), line=n,
                                 hint="delete the line (or the file) and rerun: lost entries are asked again") from None
            self.entries[key] = entry
        # a whole last entry without its newline: the next append ends its line first
        self._newline_first = bool(text) and not text.endswith("\n") and self._torn_at is None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._torn_at is not None:
            with self.path.open("r+b") as fb:
                fb.truncate(self._torn_at)
            self._torn_at = None
        with self.path.open("a", encoding="utf-8") as f:
            f.write(("\n" if self._newline_first else "") + json.dumps(entry, ensure_ascii=False) + "\n")
        self._newline_first = False

    def __len__(self) -> int:
        return len(self.entries)
