"""Code grading: candidate extraction, the test program, and real runs in the sandbox."""

from __future__ import annotations

import pytest

from thor_cli.grading import GradeConfig, Grader
from thor_cli.grading.code import candidate_code, program_for

HE = {"id": "he/0", "task": "code", "entry_point": "add", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
      "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"}
MBPP = {"id": "mbpp/1", "task": "code", "entry_point": "sq", "prompt": "Write a function sq.",
        "tests": "assert sq(3) == 9\nassert sq(-2) == 4"}


def test_candidate_and_program_text() -> None:
    assert candidate_code({"response": "text\n```python\nx = 1\n```\nmore ```python\ny = 2\n```"}) == "y = 2"
    assert candidate_code({"trajectory": {"turns": [{"kind": "text", "text": "<code>z=3</code>"}]}}) == "z=3"
    body = program_for(HE, "    return a + b\n")  # a bare body completes the prompt
    assert body.startswith("def add(a, b):") and body.rstrip().endswith("check(add)")
    assert program_for(MBPP, "def sq(x):\n    return x*x").startswith("def sq(x)")  # prose prompt not prepended


def test_code_problems_run_in_the_sandbox() -> None:
    recs = [
        {**HE, "response": "```python\ndef add(a, b):\n    return a + b\n```"},
        {**HE, "response": "```python\ndef add(a, b):\n    return a - b\n```"},
        {**MBPP, "response": "```python\ndef sq(x):\n    return x * x\n```"},
        {**MBPP, "response": "```python\ndef sq(x):\n    while True: pass\n```"},
        {**MBPP, "response": "no code at all"},
    ]
    try:
        with Grader(GradeConfig(code_timeout=2)) as g:
            grades = g.grade(recs)
    except Exception as e:  # noqa: BLE001 -- no working sandbox on this machine
        pytest.skip(f"sandbox unavailable: {e}")
    assert [x.correct for x in grades] == [True, False, True, False, False]
    assert grades[1].method == "code_tests" and "assert candidate(1, 2) == 3" in (grades[1].detail or "")
    assert grades[2].detail is None


def test_grader_keeps_one_sandbox_for_its_life(pool_starts: list) -> None:
    # grade() on code records used to start (and stop) a sandbox pool per call, ignoring the memory limit.
    started = pool_starts
    ok = {**MBPP, "response": "```python\ndef sq(x):\n    return x * x\n```"}
    bad = {**MBPP, "response": "```python\ndef sq(x):\n    return x\n```"}
    cfg = GradeConfig(code_timeout=5, code_memory_mb=700, workers=1)
    try:
        with Grader(cfg) as g:
            assert g.grade([dict(MBPP)])[0].method == "no_answer"
            assert not started  # nothing to run: no pool
            first = g.grade([ok, bad])
            second = g.grade([bad, ok, {"answer": "2", "pred": "2"}])
    except Exception as e:  # noqa: BLE001 -- no working sandbox on this machine
        if not started or not started[0].workers:
            pytest.skip(f"sandbox unavailable: {e}")
        raise
    assert [x.correct for x in first] == [True, False] and [x.correct for x in second] == [False, True, True]
    assert len(started) == 1 and started[0].cfg.memory_mb == 700 and started[0].cfg.timeout == 5
    assert all(w.proc is not None and w.proc.returncode is not None for w in started[0].workers)  # closed
