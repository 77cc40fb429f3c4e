"""Protocols: call extraction, result formatting, answers, truncation."""

from __future__ import annotations

from typing import Any

import pytest

from thor_cli.errors import UsageError
from thor_cli.records.schema import ExecResult
from thor_cli.rollout.protocols import TAPO, THOR, get_protocol, last_boxed, result_text, truncate_middle


def test_thor_call_is_the_last_python_cell() -> None:
    text = "see ```python\nold()\n``` then\n```python\nimport math\nprint(math.pi)\n```\n```output"
    call = THOR.parse_call(text, "```output")
    assert call.tool == "python" and call.error is None
    assert call.arg == "import math\nprint(math.pi)"
    assert text[call.start:].startswith("```python\nimport math")


def test_thor_output_without_cell_is_malformed() -> None:
    call = THOR.parse_call("just text\n```output", "```output")
    assert call.error is not None and call.tool == ""


def test_tapo_code_and_search() -> None:
    c = TAPO.parse_call("<think>hm</think><code>\n```python\nprint(2)\n```\n</code>", "</code>")
    assert (c.tool, c.arg) == ("python", "print(2)")
    s = TAPO.parse_call("<think>x</think><search> capital of France </search>", "</search>")
    assert (s.tool, s.arg) == ("search", "capital of France")
    bad = TAPO.parse_call("no opener </search>", "</search>")
    assert bad.error is not None


def test_formatting_and_failure_reasons() -> None:
    ok = ExecResult(status="ok", stdout="4\n")
    assert THOR.format_result(ok, 100) == "\n4\n```\n"
    assert TAPO.format_result(ok, 100) == "\n<response>\n4\n</response>\n"
    err = ExecResult(status="error", stdout="partial\n", error="ZeroDivisionError: division by zero")
    assert result_text(err, 100) == "partial\nZeroDivisionError: division by zero"
    assert "Timeout" in result_text(ExecResult(status="timeout"), 100)
    assert THOR.failure("python", ok) is None
    assert THOR.failure("python", ExecResult(status="ok", stdout="  \n")) == "no_output"
    assert THOR.failure("search", ExecResult(status="ok", stdout="")) is None
    for status in ("error", "timeout", "killed", "memory"):
        assert THOR.failure("python", ExecResult(status=status)) == status  # type: ignore[arg-type]


def test_truncation_keeps_head_and_tail() -> None:
    text = "HEAD" + "x" * 5000 + "TAIL"
    out = truncate_middle(text, 100)
    assert out.startswith("HEAD") and out.endswith("TAIL") and "chars cut" in out and len(out) < 140
    assert truncate_middle("short", 100) == "short"
    assert truncate_middle(text, 0) == text


def test_answers() -> None:
    assert last_boxed(r"a \boxed{1} b \boxed{\dfrac{3}{4}}") == r"\dfrac{3}{4}"
    assert last_boxed(r"\boxed 7 done") == "7"
    assert last_boxed(r"\boxed{unclosed") is None
    assert TAPO.final_answer("<answer> Paris </answer>") == "Paris"
    assert TAPO.final_answer("none") is None


def test_prompts_and_registry() -> None:
    assert "Q?" in THOR.user_message("Q?", True) and "\\boxed{}" in THOR.user_message("Q?", True)
    assert "programs" not in THOR.user_message("Q?", False)
    assert THOR.stops(True) == ("```output",) and THOR.stops(False) == ()
    assert "</answer>" in TAPO.stops(False) and "</code>" in TAPO.stops(True)
    with pytest.raises(UsageError):
        get_protocol("nope")


@pytest.mark.parametrize(("proto", "text"), [
    (TAPO, "<think>x</think><answer>so the result is \\boxed{12}</answer>"),
    (TAPO, "<answer> Paris </answer>"),
    (TAPO, "no tags but \\boxed{3}"),
    (THOR, "so \\boxed 5."),
    (THOR, "a \\boxed{1} b \\boxed{\\dfrac{3}{4}}"),
    (THOR, "\\boxed{a} then \\boxed{unclosed"),
    (THOR, "<answer>\\boxed{7}</answer>"),
])
def test_final_answer_agrees_with_the_grader(proto: Any, text: str) -> None:
    from thor_cli.grading.extract import extract_answer

    assert proto.final_answer(text) == extract_answer(text)
    assert proto.final_answer(text) is not None


def test_final_answer_without_an_answer_is_none() -> None:
    # no fallbacks ("the answer is X"): the engine's stop reason "answer" means a boxed/tagged answer
    assert THOR.final_answer("the answer is 4.") is None and TAPO.final_answer("none") is None
