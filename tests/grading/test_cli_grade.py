"""`thor grade` end to end through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

THOR = str(Path(sys.executable).with_name("thor"))

RECS = [
    {"id": "a", "answer": "1000", "response": "so \\boxed{1,000}"},
    {"id": "b", "answer": "\\frac{1}{2}", "trajectory": {"turns": [{"kind": "text", "text": "\\boxed{0.6}"}]}},
    {"id": "c", "answer": "Paris", "response": "<answer>paris</answer>", "extra": {"kept": True}},
]


def _run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([THOR, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_grade_stdin_to_stdout() -> None:
    res = _run(["grade", "--workers", "1"], "".join(json.dumps(r) + "\n" for r in RECS))
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["grade"]["correct"] for o in out] == [True, False, True]
    assert out[2]["extra"] == {"kept": True}
    assert out[0]["grade"]["pred"] == "1,000"
    assert "2/3 correct" in res.stderr


def test_grade_file_resume_and_pattern(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECS))
    out = tmp_path / "out.jsonl"
    assert _run(["grade", str(src), "-o", str(out), "--limit", "2"]).returncode == 0
    res = _run(["grade", str(src), "-o", str(out), "--resume"])
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", "c"]
    assert "2 already done" in res.stderr
    res = _run(["grade", "--pattern", r"ANS=(\w+)"], json.dumps({"answer": "7", "response": "ANS=7"}) + "\n")
    assert json.loads(res.stdout)["grade"]["correct"] is True


def test_grade_bad_input_names_line() -> None:
    res = _run(["grade"], '{"answer": "1"}\n{not json\n')
    assert res.returncode == 1
    assert "<stdin>:2" in res.stderr
