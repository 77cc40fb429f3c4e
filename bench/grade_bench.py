"""Grading quality and throughput: thor's grader against plain math-verify, same pairs, same run.

Part 1, quality: the labelled hard set tests/grading/hard_pairs.jsonl (repeating decimals, trig in
degrees, complex numbers, Unicode, empty sets, unions, labelled tuples, exact huge/tiny values,
pathological input, and the usual fractions/decimals/LaTeX/sets/intervals/matrices/units/text/
choices; many near-miss negatives). For each grader: agreement with the labels, precision
(of the answers it calls correct, how many are) and recall (of the correct answers, how many it
calls correct), time, and the classes where it errs.

Part 2, throughput. Pairs: every MATH500 (and GSM8K, AMC23) gold answer against perturbed variants of it, some
equivalent (same string, reformatted LaTeX, decimal for a fraction, thousands separators, a
unit, "x = ...") and some not (a changed number, an extra term). Plain math-verify is run the way
its README shows (parse both, verify) in one process; thor runs its Grader (fast paths in
process, math-verify in a pool of worker processes with hard timeouts), worker start-up included.

    .venv/bin/python bench/grade_bench.py [--limit 500] [--workers N] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from fractions import Fraction
from pathlib import Path

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


HARD = Path(__file__).resolve().parent.parent / "tests" / "grading" / "hard_pairs.jsonl"


def scores(verdicts: list[bool], labels: list[bool]) -> tuple[float, float, float]:
    """(agreement, precision, recall) of verdicts against labels."""
    tp = sum(v and lab for v, lab in zip(verdicts, labels, strict=True))
    said = sum(verdicts)
    return (sum(v == lab for v, lab in zip(verdicts, labels, strict=True)) / len(labels),
            tp / said if said else 1.0, tp / sum(labels))


def plain_math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    try:  # its own (signal) timeouts bound each call: we are in the main thread
        return bool(verify(parse("\\boxed{" + gold + "}"), parse("\\boxed{" + pred + "}")))
    except Exception:  # noqa: BLE001 -- a crash is "not equal", as in thor
        return False


def hard_set(workers: int | None) -> None:
    rows = [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]
    labels = [bool(r["label"]) for r in rows]
    print(f"hard set: {len(rows)} labelled pairs ({sum(labels)} equivalent, {len(rows) - sum(labels)} not) "
          f"from {HARD.name}")
    t0 = time.perf_counter()
    mv = [plain_math_verify(r["pred"], r["gold"]) for r in rows]
    t_mv = time.perf_counter() - t0

    from thor_cli.grading import GradeConfig, Grader

    t0 = time.perf_counter()
    with Grader(GradeConfig(workers=workers)) as grader:
        grades = grader.grade_math([{"pred": r["pred"], "answer": r["gold"]} for r in rows])
    t_thor = time.perf_counter() - t0
    thor = [g.correct for g in grades]
    print(f"{'grader':<22}{'agreement':>10}{'precision':>11}{'recall':>8}{'seconds':>9}{'pairs/s':>9}")
    for name, v, t in (("math-verify (plain)", mv, t_mv), ("thor Grader", thor, t_thor)):
        a, p, r = scores(v, labels)
        print(f"{name:<22}{a:>10.1%}{p:>11.1%}{r:>8.1%}{t:>9.2f}{len(rows) / t:>9.0f}")
    classes = sorted({r["class"] for r in rows})
    print(f"{'class':<20}{'pairs':>6}{'math-verify wrong':>19}{'thor wrong':>12}")
    for c in classes:
        idx = [i for i, r in enumerate(rows) if r["class"] == c]
        print(f"{c:<20}{len(idx):>6}{sum(mv[i] != labels[i] for i in idx):>19}"
              f"{sum(thor[i] != labels[i] for i in idx):>12}")
    for i, r in enumerate(rows):
        if thor[i] != labels[i]:
            print(f"  thor wrong [{r['class']}] pred={r['pred'][:50]!r} gold={r['gold'][:50]!r} "
                  f"label={labels[i]} method={grades[i].method}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="problems per benchmark")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip-throughput", action="store_true", help="only the labelled hard set")
    args = ap.parse_args()
    hard_set(args.workers)
    if args.skip_throughput:
        return
    print()
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
