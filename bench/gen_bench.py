"""thor gen's throughput: TIRGen problems/s with instant scripted backends (the actor is the scripted
backend, the critic the rule-based arithmetic one, cells in the real sandbox), all problems in
flight at once against the same pipeline run one problem at a time, in the same run.

    .venv/bin/python bench/gen_bench.py [--problems 48] [--delay 0.0]

``--delay`` gives each actor call a simulated generation time (seconds) to show how the pipeline
overlaps generation with the sandbox and the critic. Prints one table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=48)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()

    from thor_cli.backends.scripted import ScriptedBackend
    from thor_cli.data.arith import generate as synth
    from thor_cli.gen.critics import ArithmeticCritic
    from thor_cli.gen.stage import GenOptions, generate
    from thor_cli.gen.tirgen import TirgenConfig
    from thor_cli.grading import GradeConfig
    from thor_cli.models.tiny import build_tiny_model
    from thor_cli.records.jsonl import OutputSink
    from thor_cli.stages import RunOptions

    tmp = Path(tempfile.mkdtemp(prefix="gen-bench-"))
    model = build_tiny_model(tmp / "tiny")
    problems = list(synth("train", args.problems, seed=0, form="plain"))

    def actor(context: str, ids: list[int], call: int) -> str:
        # the problem's own expression, claimed wrongly: the critic makes it a cell, the cell runs
        for p in problems:
            if p["question"] in context:
                return f"We compute {p['meta']['expression']} = 1.\nThe final answer is {p['answer']}."
        return "The final answer is 0."

    def run(concurrency: int) -> tuple[float, int]:
        from transformers import AutoTokenizer

        backend = ScriptedBackend(tokenizer=AutoTokenizer.from_pretrained(model), script=actor, delay=args.delay)
        opts = RunOptions(model=str(model), backend="scripted", self_correct=False, workers=2, concurrency=concurrency,
                          max_tokens=256)
        gopts = GenOptions(tirgen=TirgenConfig(step_tokens=128, min_step_tokens=1, tries=1),
                           grade=GradeConfig(workers=1))
        out = tmp / f"gen-{concurrency}.jsonl"
        sink = OutputSink(str(out))
        t0 = time.perf_counter()
        counts = asyncio.run(generate(problems, opts, gopts, sink, critic=ArithmeticCritic(), key_config={},
                                      backend=backend))
        secs = time.perf_counter() - t0
        sink.commit()
        return secs, counts.kept

    run(64)  # warm-up: sandbox pool, grader workers, imports
    rows = []
    for name, conc in (("one problem at a time", 1), ("all in flight (thor gen)", 64), ("one at a time, again", 1)):
        secs, kept = run(conc)
        rows.append((name, secs, kept))
        print(f"[gen_bench] {name}: {secs:.2f} s, {kept} kept", file=sys.stderr)
    base = (rows[0][1] + rows[2][1]) / 2
    print(f"{'pipeline':<28} {'seconds':>8} {'problems/s':>11} {'kept':>5} {'vs one at a time':>17}")
    for name, secs, kept in rows:
        print(f"{name:<28} {secs:8.2f} {args.problems / secs:11.1f} {kept:5d} {base / secs:16.2f}x")


if __name__ == "__main__":
    main()
