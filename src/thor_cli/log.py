"""Logging and progress on stderr only. stdout carries data.

A rich progress bar shows only when stderr is a terminal; otherwise a line every few seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("thor")


def setup_logging(verbosity: int = 0) -> None:
    """-1 quiet (warnings), 0 info, 1+ debug. Idempotent."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    root = logging.getLogger("thor")
    root.setLevel(level)
    if root.handlers:
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False,
                                               show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("thor: %(message)s"))
    root.addHandler(handler)
    root.propagate = False


class _Progress:
    def __init__(self, desc: str, total: int | None, bar: Any = None, task: Any = None) -> None:
        self.desc, self.total, self.n = desc, total, 0
        self._bar, self._task = bar, task
        self._last = time.monotonic()
        self._start = self._last

    def advance(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
            return
        now = time.monotonic()
        if now - self._last >= 10.0:
            self._last = now
            total = f"/{self.total}" if self.total else ""
            log.info("%s: %d%s (%.1f/s)", self.desc, self.n, total, self.n / max(now - self._start, 1e-9))


@contextmanager
def progress(desc: str, total: int | None = None) -> Iterator[_Progress]:
    """A progress counter: a rich bar on a terminal, periodic log lines otherwise."""
    if sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(desc, total=total)
            yield _Progress(desc, total, bar, task)
    else:
        yield _Progress(desc, total)
