"""Inputs for the `thor show --html` tests: two eval runs with known grades, a gen file with critic
rewrites, an rl metrics.jsonl, a filter summary; and the headless-Chromium fixture."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
N_PROBLEMS = 30  # x 2 samples x 2 runs = 120 eval rows: three pages of 50 in the browser


def _traj(i: int, correct: bool, failed: bool) -> dict[str, Any]:
    turns: list[dict[str, Any]] = [
        {"kind": "text", "text": f"Let me compute {i} * 3.\n"},
        {"kind": "code", "text": f"```python\nprint({i} * 3)\n```\n```output", "tool": "python"},
        {"kind": "output", "text": f"\n{i * 3}\n```\n", "tool": "python",
         "exec": {"status": "ok", "stdout": f"{i * 3}\n", "duration_ms": 1.0}},
        {"kind": "text", "text": f"The answer is \\boxed{{{i * 3 if correct else i * 3 + 1}}}."}]
    retries = []
    if failed:  # a failed cell the model backed off from (a self-correction)
        retries.append({"at_turn": 1, "dropped_text": f"```python\nprint({i} * 3 +)\n```", "dropped_ids": [],
                        "reason": "error", "exec": {"status": "error", "error": "SyntaxError: invalid syntax"}})
    return {"v": 1, "protocol": "thor", "turns": turns, "retries": retries, "final_answer": str(i * 3),
            "stop_reason": "answer", "n_tool_calls": 1 + len(retries), "n_corrections": len(retries)}


def eval_records(run: str) -> list[dict[str, Any]]:
    """base: sample 0 right when i % 3 == 0, sample 1 always wrong; sft: wrong only when i % 10 == 0.
    Problems with i % 5 == 0 have a failed cell (self-correction) in base."""
    out = []
    for i in range(N_PROBLEMS):
        for s in range(2):
            correct = (i % 3 == 0 and s == 0) if run == "base" else i % 10 != 0
            failed = run == "base" and i % 5 == 0
            pred = str(i * 3 if correct else i * 3 + 1)
            out.append({"id": f"gsm8k/test/{i}", "source": "gsm8k", "question": f"What is {i} times 3?",
                        "answer": str(i * 3), "sample": s, "trajectory": _traj(i, correct, failed),
                        "eval": {"tokens": 40 + i, "wall_s": 0.5},
                        "grade": {"correct": correct, "pred": pred, "gold": str(i * 3), "method": "exact"}})
    return out


def gen_records() -> list[dict[str, Any]]:
    out = []
    for i in range(3):
        actor = f"We add {i} and 5.\n{i} + 5 = {i + 7}\nSo the answer is {i + 7}."
        critic = f"We add {i} and 5.\n```python\nprint({i} + 5)\n```\nSo the answer is {i + 5}."
        traj = {"v": 1, "protocol": "thor", "turns": [
            {"kind": "text", "text": f"We add {i} and 5.\n", "author": "critic"},
            {"kind": "code", "text": f"```python\nprint({i} + 5)\n```\n```output", "tool": "python", "author": "critic"},
            {"kind": "output", "text": f"\n{i + 5}\n```\n", "tool": "python", "exec": {"status": "ok"}},
            {"kind": "text", "text": f"So the answer is \\boxed{{{i + 5}}}.", "author": "critic"}],
            "retries": [], "final_answer": str(i + 5), "stop_reason": "answer", "n_tool_calls": 1, "n_corrections": 0}
        out.append({"id": f"arith-train/0/{i}", "source": "arith-train", "question": f"What is {i} + 5?",
                    "answer": str(i + 5), "sample": 0, "trajectory": traj,
                    "grade": {"correct": True, "pred": str(i + 5), "gold": str(i + 5), "method": "exact"},
                    "gen": {"mode": "tirgen", "critic": "arithmetic", "steps": [
                        {"actor": actor, "critic": critic, "cells": [{"tool": "python", "status": "ok"}], "retries": 0}]}})
    return out


FUNNEL = {"stage": "filter", "read": 3, "kept": 2, "funnel": [
    {"filter": "malformed", "enabled": True, "in": 3, "out": 3, "removed": 0, "kept_pct": 100.0, "reasons": {}},
    {"filter": "correct", "enabled": True, "in": 3, "out": 2, "removed": 1, "kept_pct": 66.67,
     "reasons": {"numeric": 1}},
    {"filter": "code_quality", "enabled": False, "in": 2, "out": 2, "removed": 0, "kept_pct": 100.0, "reasons": {}}]}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@dataclass
class Inputs:
    base: Path
    sft: Path
    gen: Path
    rl_dir: Path
    funnel: Path

    def args(self) -> list[str]:
        return [f"base={self.base}", f"sft={self.sft}", str(self.gen), str(self.rl_dir), str(self.funnel)]


@pytest.fixture
def report_inputs(tmp_path: Path) -> Inputs:
    rl = tmp_path / "rl"
    write_jsonl(rl / "metrics.jsonl", [{"step": s, "loss": 1.0 / s, "reward_mean": 0.2 * s, "accuracy": 0.1 * s}
                                       for s in range(1, 4)])
    funnel = tmp_path / "filter.summary.json"
    funnel.write_text(json.dumps(FUNNEL, indent=2))
    return Inputs(base=write_jsonl(tmp_path / "eval-base.jsonl", eval_records("base")),
                  sft=write_jsonl(tmp_path / "eval-sft.jsonl", eval_records("sft")),
                  gen=write_jsonl(tmp_path / "gen.jsonl", gen_records()), rl_dir=rl, funnel=funnel)


# ---- headless Chromium (Debian's chromium + chromium-driver, driven by selenium) ----

def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return None
    if os.environ.get("THOR_SETUP_BROWSER", "1") == "0":
        return "chromium/chromedriver not installed and THOR_SETUP_BROWSER=0 (run shell/setup-browser.sh)"
    res = subprocess.run([str(ROOT / "shell" / "setup-browser.sh")], capture_output=True, text=True, timeout=600)
    if res.returncode != 0 or not (shutil.which("chromium") and shutil.which("chromedriver")):
        return f"chromium could not be installed by shell/setup-browser.sh: {res.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Any:
    """A headless Chromium WebDriver for the session (installed by shell/setup-browser.sh if missing)."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    yield driver
    driver.quit()


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $THOR_TEST_ARTIFACTS if set, else runs/test-artifacts/ in the repo
    (ignored by git); tmp_path keeps a copy too."""
    out = Path(os.environ.get("THOR_TEST_ARTIFACTS") or ROOT / "runs" / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out
