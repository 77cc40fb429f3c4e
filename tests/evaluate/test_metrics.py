"""Metrics: unbiased pass@k, avg@k, maj@k, self-rewarded best-of-N by cells, tool statistics."""

from __future__ import annotations

import pytest

from thor_cli.evaluate import best_by_cells, pass_at, summarize


def _rec(pid: str, s: int, correct: bool, pred: str | None, statuses: list[str], src: str = "b1",
         tokens: int = 10) -> dict:
    turns = []
    for st in statuses:
        turns += [{"kind": "code", "text": "x"}, {"kind": "output", "text": "", "exec": {"status": st}}]
    return {"id": pid, "source": src, "sample": s, "eval": {"tokens": tokens, "wall_s": 1.0},
            "trajectory": {"turns": turns, "retries": [], "n_tool_calls": len(statuses), "n_corrections": 0},
            "grade": {"correct": correct, "pred": pred, "gold": "1", "method": "numeric"}}


def test_pass_at_k_unbiased() -> None:
    assert pass_at(4, 0, 1) == 0.0 and pass_at(4, 4, 1) == 1.0
    assert pass_at(4, 1, 1) == pytest.approx(0.25)
    assert pass_at(10, 3, 5) == pytest.approx(1 - (7 * 6 * 5 * 4 * 3) / (10 * 9 * 8 * 7 * 6))
    with pytest.raises(ValueError):
        pass_at(2, 1, 3)


def test_summary_per_benchmark() -> None:
    recs = [
        # p1: 1/4 right; the right one is the only one with clean cells -> best@4 right, maj@4 wrong
        _rec("p1", 0, False, "2", ["error"]), _rec("p1", 1, True, "1", ["ok", "ok"]),
        _rec("p1", 2, False, "2", ["ok", "timeout"]), _rec("p1", 3, False, "2", []),
        # p2: 3/4 right; maj right; best = sample 0 (first of equal scores), right
        _rec("p2", 0, True, "5", []), _rec("p2", 1, True, "5", []), _rec("p2", 2, False, None, []),
        _rec("p2", 3, True, "5.0", []),
        _rec("q1", 0, True, "7", ["ok"], src="b2"), _rec("q1", 1, False, "8", ["error"], src="b2"),
    ]
    s = summarize(recs)
    b1 = s["benchmarks"]["b1"]
    assert (b1["problems"], b1["samples"], b1["k"]) == (2, 8, 4)
    assert b1["avg@k"] == pytest.approx((0.25 + 0.75) / 2)
    assert b1["pass@k"] == pytest.approx(1.0)
    assert b1["maj@k"] == pytest.approx(0.5)
    assert b1["best@k_cells"] == pytest.approx(1.0)
    assert b1["cells"] == 5 and b1["cell_success_rate"] == pytest.approx(3 / 5)
    assert b1["tool_calls_mean"] == pytest.approx(5 / 8)
    assert b1["no_answer"] == 1 and b1["tokens_total"] == 80 and b1["wall_s"] == pytest.approx(8.0)
    b2 = s["benchmarks"]["b2"]
    assert b2["avg@k"] == 0.5 and b2["pass@k"] == 1.0 and b2["best@k_cells"] == 1.0
    assert s["macro_avg@k"] == pytest.approx((0.5 + 0.5) / 2)


def test_best_by_cells_prefers_an_answer_and_clean_cells() -> None:
    a = _rec("p", 0, False, None, ["ok"])
    b = _rec("p", 1, False, "3", ["ok", "error"])
    c = _rec("p", 2, True, "4", ["ok", "ok", "ok"])
    assert best_by_cells([a, b, c]) is c
    assert best_by_cells([a, b]) is b
