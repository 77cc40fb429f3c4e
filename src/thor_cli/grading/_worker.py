"""The grader worker process: imports and warms sympy/math-verify once, then checks pairs.

Started by ``grading.pool`` as ``python -c "...serve(rfd, wfd, mem_mb)"`` with two pipe fds.
"""

from __future__ import annotations

import resource
from multiprocessing.connection import Connection

from thor_cli.grading.equiv import equivalent, warm

warm()


def serve(rfd: int, wfd: int, mem_mb: int) -> None:
    main(Connection(rfd, writable=False), Connection(wfd, readable=False), mem_mb)


def main(conn: Connection, out: Connection, mem_mb: int) -> None:
    """Protocol: parent sends a list of (index, pred, gold) or None (exit); worker answers one
    (index, correct, method) per pair as soon as it is decided, then None for "chunk done"."""
    if mem_mb > 0:
        # a pathological answer may also try to eat memory; MemoryError is graded as an error
        limit = mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        for idx, pred, gold in msg:
            try:
                ok, method = equivalent(pred, gold)
            except MemoryError:
                ok, method = False, "error"
            out.send((idx, ok, method))
        out.send(None)
