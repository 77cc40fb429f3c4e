"""Soak test of the sandbox (not in CI): many cells and sessions; watch zombies, fds and memory.

    .venv/bin/python bench/exec_soak.py                 # 100,000 cells (~1 min per 10k on 2 cores)
    .venv/bin/python bench/exec_soak.py --cells 20000

Cells mix trivial work, sympy, exceptions, forks, crashes and timeouts; a new session every 20
cells. Every 10% it prints: host fds, host RSS, PSS of all sandbox processes, their count, and
zombies on the machine. Flat numbers after warm-up = no leak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

from thor_cli import aio
from thor_cli.sandbox import SandboxConfig, SandboxPool

CELLS = [
    (0.80, "acc = acc + 1\nprint(acc)"),
    (0.10, "import sympy as sp\nprint(sp.factorint(acc * 7919 + 1))"),
    (0.04, "raise ValueError(acc)"),
    (0.03, "import subprocess\nsubprocess.run(['true'])\nimport os\nos.fork() or print('p')"),
    (0.02, "import os\nos._exit(3)"),
    (0.01, "while True:\n    pass"),
]


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _proc_kb(path: str, field: str) -> int | None:
    """The kB value of ``field`` in a /proc file (None when the process or the field is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kb(pid: int) -> int:
    return _proc_kb(f"/proc/{pid}/status", "VmRSS:") or 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that share them, so the sum
    over the sandbox's processes is the memory it really holds (RSS would count the warm
    interpreter's pages once per session)."""
    pss = _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
    return rss_kb(pid) if pss is None else pss


def zombies() -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    n += f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                pass
    return n


def snapshot() -> str:
    me = os.getpid()
    kids = descendants(me)
    return (f"host fds {len(os.listdir('/proc/self/fd'))}, host RSS {rss_kb(me) / 1024:.0f} MB, "
            f"sandbox procs {len(kids)} PSS {sum(map(pss_kb, kids)) / 1024:.0f} MB, zombies {zombies()}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    rng = random.Random(0)
    weights, codes = zip(*CELLS, strict=True)
    done, statuses = 0, {}
    t0 = time.perf_counter()
    async with SandboxPool(SandboxConfig(timeout=0.5)) as pool:
        print(f"start: {snapshot()}", flush=True)
        step = max(args.cells // 10, 1)

        async def lane() -> None:
            nonlocal done
            while done < args.cells:
                async with await pool.session() as s:
                    await s.run("acc = 0")
                    for _ in range(20):
                        if done >= args.cells:
                            return
                        r = await s.run(rng.choices(codes, weights)[0])
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        done += 1
                        if done % step == 0:
                            print(f"{done:>7} cells {time.perf_counter() - t0:6.1f}s: {snapshot()}", flush=True)
                        if not s.alive:
                            break

        await asyncio.gather(*(lane() for _ in range(args.concurrency)))
        await asyncio.sleep(1.0)
        print(f"end:   {snapshot()}\nstatuses: {statuses}", flush=True)


if __name__ == "__main__":
    aio.run(main())
