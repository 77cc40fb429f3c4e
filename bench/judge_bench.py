"""The LLM judge against the labels of the hard set: agreement, precision, recall, replies it could
not parse, time; then the same pairs again, which the cache must answer without asking.

A stratified sample (seeded) of tests/grading/hard_pairs.jsonl, half equivalent and half not, goes
straight to the judge (not through the rules: this measures the judge itself). Any backend:

    .venv/bin/python bench/judge_bench.py --model smollm2-135m --backend hf -n 50
    .venv/bin/python bench/judge_bench.py --model Qwen/Qwen2.5-7B-Instruct --backend openai \\
        --base-url http://localhost:8000/v1 -n 200
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from thor_cli.judge import Judge, JudgeCache, JudgeItem

HARD = Path(__file__).resolve().parent.parent / "tests" / "grading" / "hard_pairs.jsonl"


def sample(n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(r["pred"]) + len(r["gold"]) < 200]  # pathological lengths say little here
    rng = random.Random(seed)
    pos = [r for r in rows if r["label"]]
    neg = [r for r in rows if not r["label"]]
    rng.shuffle(pos)
    rng.shuffle(neg)
    return pos[:n // 2] + neg[:n - n // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    rows = sample(args.n, args.seed)
    items = [JudgeItem(r["pred"], r["gold"]) for r in rows]
    opts = {"base_url": args.base_url} if args.backend == "openai" else {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "judge_cache.jsonl"
        with Judge.load(args.backend, args.model, backend_options=opts, cache=JudgeCache(cache),
                        max_tokens=args.max_tokens) as judge:
            t0 = time.perf_counter()
            verdicts = judge.judge(items)
            secs = time.perf_counter() - t0
            first = dict(judge.stats)
        with Judge.load(args.backend, args.model, backend_options=opts, cache=JudgeCache(cache),
                        max_tokens=args.max_tokens) as again:
            again.judge(items)
            second = dict(again.stats)
    labels = [bool(r["label"]) for r in rows]
    said = [v.verdict == "yes" for v in verdicts]
    tp = sum(s and lab for s, lab in zip(said, labels, strict=True))
    agree = sum(s == lab for s, lab in zip(said, labels, strict=True)) / len(rows)
    print(f"judge {args.model} ({args.backend}) on {len(rows)} hard-set pairs ({sum(labels)} equivalent)")
    print(f"agreement {agree:.1%}  precision {tp / sum(said) if any(said) else float('nan'):.1%}  "
          f"recall {tp / sum(labels):.1%}  invalid replies {first['invalid']}  "
          f"verdicts yes/no/invalid {sum(v.verdict == 'yes' for v in verdicts)}/"
          f"{sum(v.verdict == 'no' for v in verdicts)}/{sum(v.verdict == 'invalid' for v in verdicts)}  "
          f"{secs:.1f}s ({len(rows) / secs:.2f} pairs/s)")
    print(f"first run: {first}; rerun from the cache: {second}")
    for r, v in list(zip(rows, verdicts, strict=True))[:5]:
        print(f"  pred={r['pred'][:30]!r} gold={r['gold'][:30]!r} label={r['label']} -> {v.verdict}: {v.reason[:80]!r}")


if __name__ == "__main__":
    main()
