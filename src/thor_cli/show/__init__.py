"""``thor show``: trajectories rendered for people, with filters and ``--stats``.

    from thor_cli.show import Filters, show
    show(records, Filters(wrong=True), stats=False)   # to stdout; pager on a terminal

Writes through ``PipeWriter``, which turns a closed pipe into ``thor_cli.errors.PipeClosed`` so
``thor show | head`` stays quiet.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from thor_cli.errors import PipeClosed
from thor_cli.show.filters import Filters
from thor_cli.show.render import render_record
from thor_cli.show.stats import compute_stats, render_stats


class PipeWriter(io.TextIOBase):
    """A text stream over stdout that raises PipeClosed when the reader went away."""

    def __init__(self, stream: IO[str]) -> None:
        self._s = stream

    def write(self, text: str) -> int:
        try:
            return self._s.write(text)
        except BrokenPipeError:
            raise PipeClosed() from None

    def flush(self) -> None:
        try:
            self._s.flush()
        except BrokenPipeError:
            raise PipeClosed() from None

    def isatty(self) -> bool:
        return self._s.isatty()

    def fileno(self) -> int:
        return self._s.fileno()


def _console(out: Any, color: bool | None) -> Any:
    from rich.console import Console

    tty = out.isatty() if color is None else color
    width = None if tty else int(os.environ.get("COLUMNS", "100"))
    return Console(file=out, force_terminal=tty, no_color=not tty, highlight=False, width=width,
                   soft_wrap=False, emoji=False)


def show(records: Iterable[dict[str, Any]], filters: Filters | None = None, *, stats: bool = False,
         out: IO[str] | None = None, pager: bool | None = None, color: bool | None = None) -> int:
    """Render the matching records (or their statistics); returns how many matched."""
    filters = filters or Filters()
    stream = PipeWriter(out if out is not None else sys.stdout)
    console = _console(stream, color)
    use_pager = stream.isatty() if pager is None else pager
    matched = 0

    def selected() -> Iterator[dict[str, Any]]:
        nonlocal matched
        for rec in records:
            if filters.match(rec):
                matched += 1
                yield rec

    if stats:
        console.print(render_stats(compute_stats(selected())))
        return matched
    if use_pager:
        with console.pager(styles=True):
            for i, rec in enumerate(selected()):
                console.print(render_record(rec, i))
    else:
        for i, rec in enumerate(selected()):
            console.print(render_record(rec, i))
            stream.flush()
    return matched


__all__ = ["Filters", "PipeWriter", "compute_stats", "render_record", "render_stats", "show"]
