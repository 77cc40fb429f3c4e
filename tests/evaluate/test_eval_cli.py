"""`thor eval` end to end: the tiny model on a few problems (answers wrong; bookkeeping right)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

THOR = str(Path(sys.executable).with_name("thor"))


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([THOR, *args], input=stdin, capture_output=True, text=True, timeout=600)


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines()]


@pytest.mark.slow
def test_eval_tiny_model_records_summary_resume_grade_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    out, summ = tmp_path / "ev.jsonl", tmp_path / "ev.summary.json"
    base = ["eval", "--model", str(tiny_model_dir), "-b", "gsm8k", "-b", "aime24", "--samples", "2",
            "--max-tokens", "24", "-o", str(out), "--summary", str(summ)]
    res = _run([*base, "--limit", "1"])
    assert res.returncode == 0, res.stderr
    recs = _lines(out)
    assert len(recs) == 4
    assert {(r["id"], r["sample"]) for r in recs} == {("gsm8k/test/0", 0), ("gsm8k/test/0", 1),
                                                     ("aime24/60", 0), ("aime24/60", 1)}
    keys = {r["keys"]["eval"] for r in recs}
    assert len(keys) == 4
    for r in recs:
        assert r["grade"]["gold"] == r["answer"] and r["grade"]["correct"] in (True, False)
        assert "trajectory" in r and r["eval"]["tokens"] > 0 and "completion_ids" not in r
    s = json.loads(summ.read_text())
    for name in ("gsm8k", "aime24"):
        m = s["benchmarks"][name]
        assert (m["problems"], m["samples"], m["k"]) == (1, 2, 2)
        for field in ("avg@k", "pass@k", "maj@k", "best@k_cells", "tool_calls_mean", "corrections_mean",
                      "tokens_mean", "wall_s"):
            assert field in m
    assert "avg@2" in res.stderr  # the table on stderr
    assert (tmp_path / "ev.jsonl.manifest.json").exists()

    # resume with a larger limit: only the new problems' samples run; same keys for the old ones
    res = _run([*base, "--limit", "2", "--resume"])
    assert res.returncode == 0, res.stderr
    recs2 = _lines(out)
    assert len(recs2) == 8 and keys <= {r["keys"]["eval"] for r in recs2}
    assert json.loads(summ.read_text())["benchmarks"]["gsm8k"]["problems"] == 2

    # grade-only recomputes the same accuracies from the records, without a model
    res = _run(["eval", "--grade-only", str(out), "--summary", str(tmp_path / "g.json")])
    assert res.returncode == 0, res.stderr
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["benchmarks"]["gsm8k"]["avg@k"] == json.loads(summ.read_text())["benchmarks"]["gsm8k"]["avg@k"]
    assert len(res.stdout.splitlines()) == 8

    # and it pipes into thor show
    shown = subprocess.run(f"'{THOR}' show --stats '{out}'", shell=True, capture_output=True, text=True)
    assert shown.returncode == 0 and "gsm8k" in shown.stdout


def test_grade_only_from_stdin_with_preds() -> None:
    recs = [{"id": "p1", "source": "toy", "sample": s, "answer": "4", "pred": p} for s, p in enumerate(["4", "5"])]
    res = _run(["eval", "--grade-only"], "".join(json.dumps(r) + "\n" for r in recs))
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["grade"]["correct"] for o in out] == [True, False]
    assert "toy" in res.stderr and "50.0" in res.stderr


def test_eval_needs_a_model() -> None:
    res = _run(["eval", "-b", "gsm8k"])
    assert res.returncode == 2 and "--model" in res.stderr
