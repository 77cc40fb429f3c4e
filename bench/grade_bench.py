"""Grading throughput: thor's grader against plain math-verify on the same pairs, same run.

Pairs: every MATH500 (and GSM8K, AMC23) gold answer against perturbed variants of it, some
equivalent (same string, reformatted LaTeX, decimal for a fraction, thousands separators, a
unit, "x = ...") and some not (a changed number, an extra term). Plain math-verify is run the way
its README shows (parse both, verify) in one process; thor runs its Grader (fast paths in
process, math-verify in a pool of worker processes with hard timeouts), worker start-up included.

    .venv/bin/python bench/grade_bench.py [--limit 500] [--workers N]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from fractions import Fraction

from thor_cli.data import load_benchmark


def variants(gold: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, pred) for one gold answer: equivalent forms and wrong ones."""
    out = [("same", gold), ("spaced", f" ${gold}$ ".replace("\\frac", "\\dfrac"))]
    if re.fullmatch(r"-?\d+", gold):
        n = int(gold)
        out += [("decimal", f"{n}.0"), ("unit", f"{n}\\text{{ units}}"), ("assign", f"x = {n}"),
                ("wrong", str(n + rng.choice([-2, -1, 1, 3])))]
        if abs(n) >= 1000:
            out.append(("thousands", f"{n:,}"))
    else:
        m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(\d+)\}", gold)
        if m:
            out.append(("decimal", str(float(Fraction(int(m.group(1)), int(m.group(2)))))))
            out.append(("slash", f"{m.group(1)}/{m.group(2)}"))
        out.append(("wrong", f"{gold}+1"))
        out.append(("wrong", re.sub(r"\d", lambda d: str((int(d.group(0)) + 1) % 10), gold, count=1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="problems per benchmark")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    pairs: list[tuple[str, str, str]] = []  # (kind, pred, gold)
    for name in ("math500", "gsm8k", "amc23"):
        lim = args.limit if args.limit is not None else (500 if name == "math500" else 100)
        for prob in load_benchmark(name, lim):
            for kind, pred in variants(str(prob["answer"]), rng):
                pairs.append((kind, pred, str(prob["answer"])))
    print(f"{len(pairs)} (pred, gold) pairs from MATH500, GSM8K, AMC23 gold answers")

    # plain math-verify, as its README shows
    from math_verify import parse, verify

    t0 = time.perf_counter()
    mv = [bool(verify(parse("\\boxed{" + g + "}"), parse("\\boxed{" + p + "}"))) for _, p, g in pairs]
    t_mv = time.perf_counter() - t0

    from thor_cli.grading import GradeConfig, Grader

    t0 = time.perf_counter()
    with Grader(GradeConfig(workers=args.workers)) as grader:
        grades = grader.grade_math([{"pred": p, "answer": g} for _, p, g in pairs])
    t_thor = time.perf_counter() - t0
    thor = [g.correct for g in grades]

    n = len(pairs)
    print(f"{'grader':<22}{'seconds':>10}{'answers/s':>12}{'judged correct':>16}")
    print(f"{'math-verify (plain)':<22}{t_mv:>10.2f}{n / t_mv:>12.0f}{sum(mv):>16}")
    print(f"{'thor Grader':<22}{t_thor:>10.2f}{n / t_thor:>12.0f}{sum(thor):>16}")
    print(f"speed-up: {t_mv / t_thor:.2f}x  (workers: {grader.pool.n_workers})")
    methods: dict[str, int] = {}
    for g in grades:
        methods[g.method] = methods.get(g.method, 0) + 1
    print("thor decided by:", ", ".join(f"{k} {v}" for k, v in sorted(methods.items(), key=lambda kv: -kv[1])))
    by_kind: dict[str, list[int]] = {}
    for (kind, _, _), a, b in zip(pairs, mv, thor, strict=True):
        row = by_kind.setdefault(kind, [0, 0, 0])
        row[0] += 1
        row[1] += a
        row[2] += b
    print(f"{'variant':<12}{'pairs':>7}{'math-verify ok':>16}{'thor ok':>9}")
    for kind, (cnt, a, b) in by_kind.items():
        print(f"{kind:<12}{cnt:>7}{a:>16}{b:>9}")
    diff = [(k, p, g, a, b) for (k, p, g), a, b in zip(pairs, mv, thor, strict=True) if a != b]
    print(f"disagreements: {len(diff)}")
    for k, p, g, a, b in diff[:15]:
        print(f"  [{k}] pred={p!r} gold={g!r} math-verify={a} thor={b}")


if __name__ == "__main__":
    main()
