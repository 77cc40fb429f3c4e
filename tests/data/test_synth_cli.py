"""`thor data synth` through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

THOR = str(Path(sys.executable).parent / "thor")


def thor(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([THOR, *args], capture_output=True, timeout=120, env={**os.environ})


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def test_one_split_to_a_file_is_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        res = thor("data", "synth", "arithmetic", "--split", "test", "--n", "50", "--seed", "3", "-o", str(out))
        assert res.returncode == 0, res.stderr.decode()
    assert a.read_bytes() == b.read_bytes()
    recs = jsonl(a.read_bytes())
    assert len(recs) == 50 and {r["source"] for r in recs} == {"arith-test"}
    manifest = json.loads(Path(f"{a}.manifest.json").read_text())
    assert manifest["stage"] == "synth" and manifest["config"] == {"name": "arithmetic", "split": "test", "n": 50,
                                                                   "seed": 3, "form": "mixed", "solutions": False}
    other = jsonl(thor("data", "synth", "arithmetic", "--split", "test", "--n", "50", "--seed", "4").stdout)
    assert [r["question"] for r in other] != [r["question"] for r in recs]


def test_several_splits_into_a_folder(tmp_path: Path) -> None:
    res = thor("data", "synth", "arithmetic", "--splits", "train=300,test=40,hard=40", "--out-dir", str(tmp_path / "d"),
               "--form", "plain")
    assert res.returncode == 0, res.stderr.decode()
    rows = {s: jsonl((tmp_path / "d" / f"{s}.jsonl").read_bytes()) for s in ("train", "test", "hard")}
    assert {s: len(r) for s, r in rows.items()} == {"train": 300, "test": 40, "hard": 40}
    assert all(r["meta"]["form"] == "plain" for rs in rows.values() for r in rs)
    qs = {s: {r["question"] for r in rs} for s, rs in rows.items()}
    assert not (qs["train"] & qs["test"] or qs["train"] & qs["hard"] or qs["test"] & qs["hard"])
    alone = jsonl(thor("data", "synth", "arithmetic", "--split", "hard", "--n", "40", "--form", "plain").stdout)
    assert alone == rows["hard"]  # a split does not depend on which others were asked for


@pytest.mark.parametrize(("args", "message"), [
    (["numbers"], "unknown generator 'numbers'"),
    (["arithmetic", "--split", "dev"], "unknown split 'dev'"),
    (["arithmetic", "--splits", "train=10"], "--splits and --out-dir go together"),
    (["arithmetic", "--splits", "train=ten", "--out-dir", "x"], "is not SPLIT=N"),
    (["arithmetic", "--form", "latex"], "unknown form 'latex'"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    res = thor("data", "synth", *args)
    assert res.returncode == 2 and message in res.stderr.decode(), res.stderr.decode()
    assert res.stdout == b""
