"""thor show --html at scale: a report of 10,000 synthetic trajectories (two runs side by side, with
failed cells, self-corrections and critic rewrites): build time and file size, against reading and
summarizing the same records (``evaluate.summary_of_file``, what ``thor eval`` already pays) in the
same run; then, when Debian's chromium is installed (shell/setup-browser.sh), the time until the
first page of the browser is shown in headless Chromium, against drawing every row into the DOM at
once (what paging avoids), also in the same run.

    .venv/bin/python bench/html_bench.py [--records 10000] [--no-browser]

Prints one table on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = ("we", "compute", "the", "sum", "of", "each", "term", "then", "check", "result", "carefully", "so")


def record(i: int, run: str, rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(10, 99999), rng.randint(2, 999)
    correct = rng.random() < (0.4 if run == "base" else 0.8)
    failed = rng.random() < 0.15
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 250)))  # ~250-1500 chars of reasoning
    turns: list[dict[str, Any]] = [
        {"kind": "text", "text": text + "\n"},
        {"kind": "code", "text": f"```python\nx = {a} * {b}\nprint(x)\n```\n```output", "tool": "python"},
        {"kind": "output", "text": f"\n{a * b}\n```\n", "tool": "python", "exec": {"status": "ok"}},
        {"kind": "text", "text": f"The answer is \\boxed{{{a * b if correct else a * b + 1}}}."}]
    retries = [{"at_turn": 1, "dropped_text": f"```python\nx = {a} * {b}\nprint(y)\n```", "reason": "error",
                "dropped_ids": [], "exec": {"status": "error", "error": "NameError: name 'y' is not defined"}}] \
        if failed else []
    rec: dict[str, Any] = {
        "id": f"synth/{i // 4}", "source": rng.choice(["gsm8k", "math500", "aime24"]), "sample": i % 4,
        "question": f"What is {a} times {b}?", "answer": str(a * b),
        "trajectory": {"v": 1, "protocol": "thor", "turns": turns, "retries": retries, "final_answer": "",
                       "stop_reason": "answer", "n_tool_calls": 1 + failed, "n_corrections": int(failed)},
        "eval": {"tokens": len(text) // 4 + 30, "wall_s": 1.0},
        "grade": {"correct": correct, "pred": str(a * b if correct else a * b + 1), "gold": str(a * b),
                  "method": "exact"}}
    if i % 10 == 0:
        rec["gen"] = {"steps": [{"actor": f"{text[:200]}\n{a} * {b} = {a * b + 7}",
                                 "critic": f"{text[:200]}\n```python\nprint({a} * {b})\n```", "cells": [{}]}]}
    return rec


def browser_times(report: Path) -> tuple[float, float, float]:
    """(ms to the first page, ms until every chart is drawn, ms to draw all rows at once)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        d.get(report.as_uri())
        WebDriverWait(d, 120).until(lambda x: x.execute_script("return document.body.dataset.ready === '1'"))
        first = float(d.execute_script("return window.thorFirstPageMs"))
        WebDriverWait(d, 120).until(lambda x: x.execute_script(
            "return Array.from(document.querySelectorAll('div.chart')).every(c => c.dataset.rendered === '1')"))
        charts = float(d.execute_script("return performance.now()"))
        everything = float(d.execute_script("""
            const rows = JSON.parse(document.getElementById('thor-data').textContent).rows;
            const t0 = performance.now(), body = document.createElement('tbody');
            for (const r of rows) { const tr = document.createElement('tr');
              for (const v of [r.run, r.id, r.s, r.b, r.c, r.p, r.g, r.t, r.x, r.f, r.n]) {
                const td = document.createElement('td'); td.textContent = String(v); tr.appendChild(td); }
              body.appendChild(tr); }
            document.querySelector('#rows').appendChild(body);
            document.body.offsetHeight;  // force layout, as showing them would
            return performance.now() - t0;"""))
        return first, charts, everything
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()

    from thor_cli.evaluate.runner import summary_of_file
    from thor_cli.show.html import build_report

    tmp = Path(tempfile.mkdtemp(prefix="html-bench-"))
    try:
        rng = random.Random(0)
        half = args.records // 2
        inputs = []
        for run in ("base", "rl"):
            path = tmp / f"eval-{run}.jsonl"
            path.write_text("".join(json.dumps(record(i, run, rng)) + "\n" for i in range(half)))
            inputs.append((run, path))
        metrics = tmp / "rl" / "metrics.jsonl"
        metrics.parent.mkdir()
        metrics.write_text("".join(json.dumps({"step": s, "loss": 1 / s, "reward_mean": s / 200}) + "\n"
                                   for s in range(1, 201)))
        in_bytes = sum(p.stat().st_size for _, p in inputs)

        t0 = time.perf_counter()
        for _, p in inputs:
            summary_of_file(str(p))
        t_summary = time.perf_counter() - t0
        out = tmp / "report.html"
        t0 = time.perf_counter()
        build_report([f"{r}={p}" for r, p in inputs] + [str(metrics.parent)], str(out))
        t_build = time.perf_counter() - t0
        size = out.stat().st_size

        print(f"{'what':<44} {'value':>12}")
        print(f"{'trajectories (2 runs)':<44} {args.records:>12,}")
        print(f"{'input JSONL':<44} {in_bytes / 1e6:>10.1f} MB")
        print(f"{'report file':<44} {size / 1e6:>10.1f} MB")
        print(f"{'read + summarize (baseline)':<44} {t_summary:>11.2f}s")
        print(f"{'build the report':<44} {t_build:>11.2f}s")
        print(f"{'build / baseline':<44} {t_build / t_summary:>11.1f}x")
        if args.no_browser or not (shutil.which("chromium") and shutil.which("chromedriver")):
            print("headless chromium: not run (--no-browser, or run shell/setup-browser.sh)")
            return
        first, charts, everything = browser_times(out)
        print(f"{'chromium: first page of 50 shown':<44} {first:>9.0f} ms")
        print(f"{'chromium: every chart drawn':<44} {charts:>9.0f} ms")
        print(f"{'chromium: all rows into the DOM (baseline)':<44} {everything:>9.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
