"""`thor show`: rendering, filters, --stats, plain text when piped, quiet on a closed pipe."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from thor_cli.show import Filters, compute_stats, show

THOR = str(Path(sys.executable).with_name("thor"))


def _traj(turns: list[dict], retries: list[dict] | None = None, **kw: object) -> dict:
    return {"v": 1, "protocol": "thor", "turns": turns, "retries": retries or [], "final_answer": kw.get("final"),
            "stop_reason": kw.get("stop", "answer"), "n_tool_calls": kw.get("calls", 0),
            "n_corrections": len(retries or [])}


RIGHT = {
    "id": "gsm8k/test/0", "source": "gsm8k", "question": "What is 2+2?", "answer": "4", "sample": 0,
    "trajectory": _traj([
        {"kind": "text", "text": "Let me compute.\n"},
        {"kind": "code", "text": "```python\nprint(2+2)\n```\n", "tool": "python"},
        {"kind": "output", "text": "```output\n4\n```\n", "tool": "python",
         "exec": {"status": "ok", "stdout": "4\n", "duration_ms": 3.0}},
        {"kind": "text", "text": "So \\boxed{4}."}],
        [{"at_turn": 1, "dropped_text": "```python\nimport nump\n```", "dropped_ids": [1], "reason": "error",
          "exec": {"status": "error", "error": "ModuleNotFoundError: No module named 'nump'"}}],
        final="4", calls=2),
    "grade": {"correct": True, "pred": "4", "gold": "4", "method": "exact"},
}
WRONG = {
    "id": "math500/test/1", "question": "Solve for x.", "answer": "5", "sample": 1,
    "trajectory": _traj([
        {"kind": "text", "text": "Try code."},
        {"kind": "code", "text": "```python\nwhile True: pass\n```", "tool": "python"},
        {"kind": "output", "text": "```output\ntimed out\n```", "tool": "python",
         "exec": {"status": "timeout", "error": "cell ran longer than 10 s"}},
        {"kind": "text", "text": "\\boxed{6}"}], final="6", calls=1),
    "grade": {"correct": False, "pred": "6", "gold": "5", "method": "numeric"},
}


def _render(recs: list[dict], **kw: object) -> str:
    buf = io.StringIO()
    show(recs, kw.pop("filters", None), out=buf, pager=False, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def test_render_has_every_part_and_no_ansi() -> None:
    text = _render([RIGHT])
    for part in ("gsm8k/test/0", "What is 2+2?", "Let me compute.", "print(2+2)", "[ok]",
                 "self-correction", "ModuleNotFoundError", "import nump", "CORRECT", "gold: 4"):
        assert part in text, part
    assert "\x1b[" not in text
    assert "```" not in text  # fences are shown as panels, not raw


def test_color_forced_gives_ansi() -> None:
    assert "\x1b[" in _render([RIGHT], color=True)


def test_filters() -> None:
    recs = [RIGHT, WRONG]
    assert [r["id"] for r in recs if Filters(wrong=True).match(r)] == ["math500/test/1"]
    assert [r["id"] for r in recs if Filters(failed_cells=True).match(r)] == ["gsm8k/test/0", "math500/test/1"]
    assert [r["id"] for r in recs if Filters(benchmarks=["math500"]).match(r)] == ["math500/test/1"]
    assert [r["id"] for r in recs if Filters(ids=["gsm8k/test/0"]).match(r)] == ["gsm8k/test/0"]
    text = _render(recs, filters=Filters(wrong=True))
    assert "WRONG" in text and "CORRECT" not in text and "timeout" in text


def test_stats() -> None:
    s = compute_stats([RIGHT, WRONG, {"id": "x", "question": "q"}])
    assert (s["records"], s["graded"], s["correct"]) == (3, 2, 1)
    assert s["tool_calls"] == {1: 1, 2: 1}
    assert s["cells"] == 3 and abs(s["cell_success_rate"] - 1 / 3) < 1e-9
    assert s["cell_errors"] == {"ModuleNotFoundError": 1, "timeout": 1}
    assert s["benchmarks"]["math500"]["accuracy"] == 0.0
    text = _render([RIGHT, WRONG], stats=True)
    assert "tool calls per trajectory" in text and "ModuleNotFoundError" in text


def test_cli_pipe_and_closed_pipe(tmp_path: Path) -> None:
    f = tmp_path / "recs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [RIGHT, WRONG] * 300))
    res = subprocess.run([THOR, "show", "--wrong", "--limit", "2"], input=f.read_text(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("math500/test/1") == 1 and "\x1b[" not in res.stdout
    # the reader goes away after one line: no traceback, exit 0
    res = subprocess.run(f"'{THOR}' show '{f}' | head -1", shell=True, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    p = subprocess.Popen([THOR, "show", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0 and b"Traceback" not in err and b"Error" not in err
