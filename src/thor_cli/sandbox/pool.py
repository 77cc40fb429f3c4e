"""SandboxPool: the warm jailed interpreters (worker.py) of one machine, sessions forked from them
(session.py), and the cell slots they share.

    async with SandboxPool(SandboxConfig()) as pool:
        async with await pool.session() as sess:
            res = await sess.run("x = 1\\nprint(x)")   # ExecResult(status="ok", stdout="1\\n", ...)

At most ``workers`` cells execute at the same time (slots.CellSlots). With ``pin_cells``, each
executing cell runs on a core no other cell runs on (``SandboxPool._place``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from thor_cli.errors import SandboxError
from thor_cli.log import log
from thor_cli.sandbox.config import SandboxConfig
from thor_cli.sandbox.jail import UIDS_PER_WORKER, Machine, probe
from thor_cli.sandbox.session import Session
from thor_cli.sandbox.slots import CellSlots
from thor_cli.sandbox.worker import Worker

if TYPE_CHECKING:
    from thor_cli.sandbox.client import RemoteSandbox


class SandboxPool:
    """Warm jailed interpreters; :meth:`session` forks a fresh session from one of them."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.machine: Machine = probe(self.cfg)
        self.workers: list[Worker] = []
        self._slots = CellSlots(self.cfg.n_workers, self.cfg.slice_s)
        # cores cells run on, one at a time each while there are more cores than slots (_place);
        # empty: the kernel places them
        # (only with a slot per core or more: with fewer slots the kernel may use the spare cores,
        # for the cells' own subprocesses too)
        cpus = sorted(os.sched_getaffinity(0))
        pin = self.cfg.pin_cells and 1 < len(cpus) <= self.cfg.n_workers
        self._cpus: list[int] = cpus if pin else []
        self._cells_on = dict.fromkeys(self._cpus, 0)  # core -> cells running there
        self._start_lock: asyncio.Lock | None = None
        self._starting: asyncio.Task[SandboxPool] | None = None  # the one start (start())
        self.closing = False
        self.off: list[str] = list(self.machine.off)
        self.hugepages_mb = 0  # of the warm interpreters' heaps, in huge pages (cfg.hugepages)
        self.immortal = 0  # objects of the warm interpreters' heaps made immortal (cfg.immortal, 3.12+)

    @classmethod
    def connect(cls, url: str, **kw: Any) -> RemoteSandbox:
        """A client of ``thor exec serve`` with the same session API (see sandbox.client)."""
        from thor_cli.sandbox.client import RemoteSandbox

        return RemoteSandbox(url, **kw)

    async def start(self) -> SandboxPool:
        """Start the warm interpreters, once: callers that come while a start is under way (many
        first sessions at once, say) wait for that same start; a failed start is each one's error."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> SandboxPool:
        self.workers = [Worker(self, i) for i in range(self.cfg.n_workers)]
        t0 = time.perf_counter()
        readies = await asyncio.gather(*(w.start() for w in self.workers), return_exceptions=True)
        errors = [r for r in readies if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]
        for r in readies:
            assert isinstance(r, dict)
            self.off += [o for o in r.get("off", []) if o not in self.off]
            self.hugepages_mb += int(r.get("hugepages_mb") or 0)
            self.immortal += int(r.get("immortal") or 0)
            if r.get("preload_failed"):
                log.warning("sandbox: could not preload %s in the jail", ", ".join(r["preload_failed"]))
        if self.off:
            log.warning("sandbox: protections OFF on this machine: %s", "; ".join(self.off))
        log.debug("sandbox: %d warm interpreters in %.2fs, %d MiB of their heaps in huge pages, %d objects immortal",
                  len(self.workers), time.perf_counter() - t0, self.hugepages_mb, self.immortal)
        return self

    async def session(self) -> Session:
        """A fresh session: a fork of a warm interpreter (never a start, never an import)."""
        if self._starting is None or not self._starting.done():
            await self.start()
        for last in (False, True):
            alive = [w for w in self.workers if w.alive and w.free_uids]
            if not alive:
                alive = [await self._replace_dead()]
            worker = min(alive, key=lambda w: len(w.sessions))
            sess = Session(self, worker, worker.free_uids.popleft())
            try:
                sess._sock = await worker.fork(sess)
                return sess
            except BaseException as e:
                worker.free_uids.appendleft(sess.uid_index)  # the slot was never used
                if last or worker.alive or not isinstance(e, SandboxError):
                    raise
            # the worker had died unnoticed (the fork found it gone): once more, on a fresh one
        raise AssertionError("unreachable")

    def _place(self, sess: Session) -> None:
        """Put the cell ``sess`` is about to run on a core no other cell runs on: its own core if
        that is free (no move), else the least used. Left to the kernel, a woken session was often
        queued behind the host on a busy core while the other core idled: 0.65 of 3.4 core-seconds
        idle in bench/exec_bench.py's mixed workload on 2 cores, 0.15 with this."""
        on = self._cells_on
        cpu = sess._cpu
        if on.get(cpu, 1 << 30) > min(on.values()):
            cpu = min(on, key=on.__getitem__)
            try:
                os.sched_setaffinity(sess._pid, {cpu})
            except ProcessLookupError:
                return  # it has just ended: its channel says so next
            except OSError as e:  # no permission (a session's uid of its own, and no CAP_SYS_NICE)
                log.debug("sandbox: cannot pin sessions to cores (%s); the kernel places them", e)
                self._cpus = []
                return
            sess._cpu = cpu
        on[cpu] += 1
        sess._placed = True

    async def _replace_dead(self) -> Worker:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            for i, w in enumerate(self.workers):
                if w.alive and w.free_uids:
                    return w
                if not w.alive:
                    await w.stop()
                    self.workers[i] = nw = Worker(self, w.index)
                    await nw.start()
                    return nw
        raise SandboxError(f"all {UIDS_PER_WORKER - 1} session slots of every worker are in use",
                           "close sessions you no longer need")

    async def close(self) -> None:
        self.closing = True
        starting = self._starting
        if starting is not None and not starting.done() and asyncio.current_task() is not starting:
            await asyncio.gather(starting, return_exceptions=True)  # then close what it started
        for w in self.workers:
            for s in list(w.sessions.values()):
                await s.close()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
