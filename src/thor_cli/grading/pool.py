"""Time-bounded answer checking: a pool of worker processes with hard per-check timeouts.

No signals and no threads-with-alarms: the parent waits on the workers' pipes with a deadline;
a worker that takes longer than ``timeout`` on one pair is killed and replaced, that pair is
graded wrong with method ``"timeout"``, and the rest of its chunk goes back to the queue. A
worker that dies (segfault, out of memory) costs one pair (method ``"error"``), never the run.

Cheap decisions (``normalize.fast_equal``) are made in the calling process and never reach the
pool; workers are fresh interpreters started lazily (about a second to import sympy and math-verify),
and a killed worker's replacement starts while the others go on.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from thor_cli.errors import ThorError
from thor_cli.grading.normalize import fast_equal
from thor_cli.log import log

Verdict = tuple[bool, str, str | None]  # (correct, method, detail)

class _Worker:
    """A fresh interpreter (not a fork: the parent may hold threads, torch, an event loop)."""

    def __init__(self, mem_mb: int) -> None:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        code = f"from thor_cli.grading._worker import serve; serve({to_child_r}, {to_parent_w}, {mem_mb})"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_child_r, to_parent_w),
                                     stdin=subprocess.DEVNULL, env=env, close_fds=True)
        os.close(to_child_r)
        os.close(to_parent_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.conn = Connection(to_parent_r, writable=False)
        self.ready = False
        self.started = time.monotonic()
        self.items: deque[tuple[int, str, str]] = deque()  # sent, not yet answered
        self.since = 0.0  # when the current item started

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(5)
        except Exception:  # noqa: BLE001 -- best effort at shutdown
            pass
        for c in (self.conn, self.send_conn):
            try:
                c.close()
            except OSError:
                pass


class GradePool:
    """``check(pairs)`` -> one (correct, method, detail) per (pred, gold); thread-safe; bounded.

    >>> with GradePool(workers=1, timeout=10) as pool:
    ...     pool.check([("0.5", r"\\frac12"), ("x^2+2x+1", "(x+1)^2")])
    [(True, 'numeric', None), (True, 'math_verify', None)]
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, mem_mb: int = 4096,
                 start_timeout: float = 120.0) -> None:
        self.n_workers = max(1, workers or min(os.cpu_count() or 1, 8))
        self.timeout = timeout
        self.mem_mb = mem_mb
        self.start_timeout = start_timeout
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.killed = 0
        self._finalizer = weakref.finalize(self, GradePool._shutdown, self._workers)

    @staticmethod
    def _shutdown(workers: list[_Worker]) -> None:
        for w in workers:
            try:
                w.send_conn.send(None)
            except Exception:  # noqa: BLE001 -- a dead worker needs no goodbye
                pass
        for w in workers:
            try:
                w.proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        workers.clear()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> GradePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers.remove(w)
        self._workers.append(_Worker(self.mem_mb))

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(pairs)
        todo: list[tuple[int, str, str]] = []
        for i, (pred, gold) in enumerate(pairs):
            fast = fast_equal(pred, gold)
            if fast is not None:
                out[i] = (fast[0], fast[1], None)
            else:
                todo.append((i, pred, gold))
        if todo:
            with self._lock:
                for i, ok, method, detail in self._run(todo):
                    out[i] = (ok, method, detail)
        return [v if v is not None else (False, "error", "not graded") for v in out]

    def _run(self, todo: list[tuple[int, str, str]]) -> list[tuple[int, bool, str, str | None]]:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self.mem_mb))
        size = max(1, min(64, math.ceil(len(todo) / (self.n_workers * 4))))
        queue: deque[list[tuple[int, str, str]]] = deque(todo[i:i + size] for i in range(0, len(todo), size))
        results: list[tuple[int, bool, str, str | None]] = []
        remaining = len(todo)
        while remaining:
            now = time.monotonic()
            for w in list(self._workers):
                if w.ready and not w.items and queue:
                    chunk = queue.popleft()
                    try:
                        w.send_conn.send(chunk)
                    except OSError as e:  # it died while idle: nothing of it is lost but itself
                        log.debug("grading: worker %d lost while idle (%s); replaced", w.proc.pid, e)
                        queue.appendleft(chunk)
                        self.killed += 1
                        self._replace(w)
                        continue
                    w.items.extend(chunk)
                    w.since = now
            conns = {w.conn: w for w in self._workers}
            deadlines = [w.since + self.timeout for w in self._workers if w.items]
            deadlines += [w.started + self.start_timeout for w in self._workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 0.5
            for conn in wait(list(conns), timeout=wait_s):
                w = conns[conn]  # type: ignore[index]
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    if not w.ready:
                        raise ThorError("grader worker died while starting",
                                        "check that sympy and math-verify import (python -c 'import math_verify')"
                                        ) from None
                    remaining -= self._lost(w, queue, results, "error", "grader worker died")
                    continue
                if msg == "ready":
                    w.ready = True
                elif msg is not None:
                    idx, ok, method = msg
                    w.items.popleft()
                    w.since = time.monotonic()
                    results.append((int(idx), bool(ok), str(method), None))
                    remaining -= 1
            now = time.monotonic()
            for w in list(self._workers):
                if w.items and now - w.since > self.timeout:
                    remaining -= self._lost(w, queue, results, "timeout",
                                            f"no decision within {self.timeout:g}s")
                elif not w.ready and now - w.started > self.start_timeout:
                    raise ThorError(f"grader worker did not start within {self.start_timeout:g}s",
                                    "check that sympy and math-verify import (python -c 'import math_verify')")
        return results

    def _lost(self, w: _Worker, queue: deque[list[tuple[int, str, str]]],
              results: list[tuple[int, bool, str, str | None]], method: str, detail: str) -> int:
        """The worker's current pair is graded wrong; the rest of its chunk is re-queued."""
        lost = 0
        if w.items:
            idx, pred, _gold = w.items.popleft()
            results.append((idx, False, method, detail))
            log.debug("grading: %s on pred %.80r", method, pred)
            lost = 1
            if w.items:
                queue.appendleft(list(w.items))
                w.items.clear()
        self.killed += 1
        self._replace(w)
        return lost
