"""How close the sandbox comes to the floor of its own design, in one run (prints; no asserts).

    .venv/bin/python bench/exec_floor.py          # ~30 s on 2 cores

The floor: the mixed workload of exec_bench.py (2,000 cells in 100 sessions of 20; 10% sympy
cells, 1% that raise) run by one warm interpreter -- the zygote's own preload, huge pages and (3.12+) immortal heap --
that forks one child per session, ``workers`` children at a time, and each child runs its 20
cells in-process and exits. No jail, no namespaces, no sockets, no host: what is left is fork,
copy-on-write of the warm heap and the cells themselves. The sandbox then runs the same workload
through SandboxPool, with all sessions open at once (as exec_bench does) and ``workers`` at a
time (as the floor does); the difference is the price of isolation, of a round trip per cell and
of interleaving many live sessions on few cores.
Machine busy/idle core-seconds come from /proc/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from exec_bench import cpu_ticks, mixed_workload, run_workload  # noqa: E402

from thor_cli import aio
from thor_cli.sandbox import SandboxConfig, SandboxPool  # noqa: E402
from thor_cli.sandbox.jail import python_path, site_dirs  # noqa: E402

ZYGOTE = Path(__file__).parent.parent / "src" / "thor_cli" / "sandbox" / "zygote.py"

# Runs in /usr/bin/python3 (the jail's interpreter) with the venv's site-packages on the path.
FLOOR = r"""
import gc, io, json, os, sys, time
ns = {"__name__": "zygote_source"}
exec(compile(open(sys.argv[1]).read(), "zygote.py", "exec"), ns)
ns["preload"](["numpy", "sympy"])
work, workers, repeats = json.loads(sys.stdin.read())
gc.collect(); ns["immortalize"](); gc.freeze(); gc.disable()
huge = ns["collapse_hugepages"]()

def busy_idle():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v) - v[3] - v[4], v[3] + v[4]

runs = []
for _ in range(repeats):
    (b0, i0), t0, running = busy_idle(), time.perf_counter(), 0
    for cells in work:
        if running >= workers:
            os.wait(); running -= 1
        if os.fork() == 0:
            gc.enable(); sys.stdout = io.StringIO(); env = {"__name__": "__main__"}
            for c in cells:
                try:
                    exec(compile(c, "<cell>", "exec"), env)
                except Exception:
                    pass
            os._exit(0)
        running += 1
    while running:
        os.wait(); running -= 1
    (b1, i1), wall = busy_idle(), time.perf_counter() - t0
    hz = os.sysconf("SC_CLK_TCK")
    runs.append((wall, (b1 - b0) / hz, (i1 - i0) / hz))
print(json.dumps({"runs": runs, "hugepages_mb": huge}))
"""


Runs = list[tuple[float, float, float]]


async def sandbox_runs(work: list[list[str]], workers: int, repeats: int) -> tuple[Runs, Runs]:
    """(all sessions open at once, ``workers`` sessions at a time), interleaved."""
    every: Runs = []
    few: Runs = []
    hz = os.sysconf("SC_CLK_TCK")
    async with SandboxPool(SandboxConfig(workers=workers)) as pool:
        sem = asyncio.Semaphore(workers)

        async def one(cells: list[str]) -> None:
            async with sem, await pool.session() as s:
                for c in cells:
                    await s.run(c)

        for _ in range(repeats):
            b0, i0 = cpu_ticks()
            wall, _ = await run_workload(pool, work)
            b1, i1 = cpu_ticks()
            every.append((wall, (b1 - b0) / hz, (i1 - i0) / hz))
            b0, i0 = cpu_ticks()
            t = time.perf_counter()
            await asyncio.gather(*(one(c) for c in work))
            wall = time.perf_counter() - t
            b1, i1 = cpu_ticks()
            few.append((wall, (b1 - b0) / hz, (i1 - i0) / hz))
    return every, few


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    workers = SandboxConfig(workers=args.workers).n_workers
    work = mixed_workload(100, 20, seed=1)
    n = sum(map(len, work))
    py = python_path(SandboxConfig())  # the jail's interpreter (THOR_SANDBOX_PYTHON, else /usr/bin/python3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site_dirs(SandboxConfig())), "OPENBLAS_NUM_THREADS": "1"}
    p = subprocess.run([py, "-c", FLOOR, str(ZYGOTE)], input=json.dumps([work, workers, args.repeats]),
                       capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        sys.exit(f"floor run failed:\n{p.stderr}")
    floor = json.loads(p.stdout)
    every, few = aio.run(sandbox_runs(work, workers, args.repeats))

    def row(name: str, runs: Runs) -> tuple[str, float]:
        wall = statistics.median(r[0] for r in runs)
        busy = statistics.median(r[1] for r in runs)
        idle = statistics.median(r[2] for r in runs)
        return (f"{name:<44} {n / wall:>7,.0f} cells/s  {wall:5.2f} s  busy {busy:4.2f} core-s  idle {idle:4.2f}"), wall

    print(f"mixed workload ({aio.loop_name()} event loop), {n} cells in {len(work)} sessions, {workers} at a time, {os.cpu_count()} cores; "
          f"medians of {args.repeats} runs (floor heap in huge pages: {floor['hugepages_mb']} MiB)")
    line_f, wall_f = row("floor: fork per session, cells in-process", floor["runs"])
    line_s, wall_s = row("thor sandbox, all 100 sessions open at once", every)
    line_w, wall_w = row(f"thor sandbox, {workers} sessions at a time", few)
    print(line_f)
    print(line_s + f"  {wall_s / wall_f:.2f}x the floor")
    print(line_w + f"  {wall_w / wall_f:.2f}x the floor")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t:.0f} s)")
