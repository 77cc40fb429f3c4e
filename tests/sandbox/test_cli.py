"""``thor exec`` end to end through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

THOR = [sys.executable, "-m", "thor_cli.cli.app"]


def thor(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*THOR, *args], input=stdin, capture_output=True, text=True, timeout=120)


def lines(*recs: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)


CELLS = lines(
    {"id": 1, "code": "print(2**100)"},
    {"id": 2, "session": "a", "code": "import sympy as sp\nx = sp.sqrt(8)"},
    {"id": 3, "session": "b", "code": "1/0"},
    {"id": 4, "session": "a", "code": "print(x)", "end_session": True},
    {"id": 5, "session": "a", "code": "print(x)"},
    {"id": 6, "code": "import time\ntime.sleep(5)", "timeout": 0.5},
    {"id": 7, "code": "x = 1"},
)


def test_exec_runs_cells_in_order_with_sessions() -> None:
    p = thor("exec", "--workers", "2", stdin=CELLS)
    assert p.returncode == 0, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5, 6, 7]
    ex = {r["id"]: r["exec"] for r in out}
    assert ex[1]["stdout"] == "1267650600228229401496703205376\n" and ex[1]["status"] == "ok"
    assert ex[3]["status"] == "error" and ex[3]["error"].startswith("ZeroDivisionError")
    assert ex[4]["stdout"] == "2*sqrt(2)\n"
    assert ex[5]["status"] == "error" and "NameError" in ex[5]["error"]  # end_session closed "a"
    assert ex[6]["status"] == "timeout"
    assert ex[7] == {**ex[7], "status": "ok", "stdout": ""}
    assert set(ex[1]) == {"status", "stdout", "stderr", "error", "duration_ms", "truncated"}


def test_exec_unordered_gives_every_record() -> None:
    p = thor("exec", "--unordered", "--timeout", "3", stdin=CELLS)
    assert p.returncode == 0, p.stderr
    assert sorted(json.loads(line)["id"] for line in p.stdout.splitlines()) == [1, 2, 3, 4, 5, 6, 7]


def test_exec_malformed_line_names_file_and_line() -> None:
    p = thor("exec", stdin=lines({"code": "print(1)"}) + "{not json\n")
    assert p.returncode == 1 and "<stdin>:2" in p.stderr
    p = thor("exec", stdin=lines({"session": "a"}))
    assert p.returncode == 1 and '"code"' in p.stderr


def test_exec_resume_replays_session_state(tmp_path: Path) -> None:
    first = tmp_path / "in1.jsonl"
    first.write_text(lines({"session": "s", "code": "x = 20"}, {"session": "s", "code": "print(x + 1)"}))
    out = tmp_path / "out.jsonl"
    assert thor("exec", str(first), "-o", str(out)).returncode == 0
    more = tmp_path / "in2.jsonl"
    more.write_text(first.read_text() + lines({"session": "s", "code": "print(x * 2)"}))
    p = thor("exec", str(more), "-o", str(out), "--resume")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["exec"]["stdout"] for r in recs] == ["", "21\n", "40\n"]


@pytest.mark.parametrize("args", [["exec", "--help"], ["exec", "run", "--help"], ["exec", "serve", "--help"]])
def test_exec_help(args: list[str]) -> None:
    p = thor(*args)
    assert p.returncode == 0 and "Usage" in p.stdout
    if args[1] != "--help":
        assert "Examples" in p.stdout and "|" in p.stdout or "serve" in args


def test_exec_slice_changes_no_result_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    """--slice (a session keeps its core for its next waiting cell) changes only the order in
    which sessions get the cores: every result is the same as in strict turns."""
    cells = lines(*({"id": f"{s}{i}", "session": s, "code": f"acc = {i} if {i} == 0 else acc * 3 + {i}\nprint(acc)"}
                    for i in range(4) for s in "abc"))

    def results(*flags: str) -> list[tuple[str, str, str]]:
        p = thor("exec", "--workers", "1", *flags, stdin=cells)
        assert p.returncode == 0, p.stderr
        return [(r["id"], r["exec"]["status"], r["exec"]["stdout"]) for r in map(json.loads, p.stdout.splitlines())]

    strict = results("--slice", "0")
    recipe = tmp_path / "exec.yaml"
    recipe.write_text("slice: 0.2\n")  # a recipe's key is the flag's name
    assert strict == results() == results("--slice", "1") == results("--config", str(recipe))
    assert [out for _, _, out in strict[-3:]] == ["18\n"] * 3  # ((0 * 3 + 1) * 3 + 2) * 3 + 3
    p = thor("exec", "--slice", "-1", stdin=cells)
    assert p.returncode == 2 and "--slice" in p.stderr
