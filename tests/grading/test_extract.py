"""Final-answer extraction: boxed with nested braces, <answer>, patterns, records."""

from __future__ import annotations

import pytest

from thor_cli.grading.extract import extract_answer, extract_boxed, prediction


@pytest.mark.parametrize("text,want", [
    (r"\boxed{5}", "5"),
    (r"first \boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"\fbox{7}", "7"),
    (r"so \boxed 9.", "9"),
    (r"\boxed{\text{(C)}} and an unclosed \boxed{3", r"\text{(C)}"),
    ("no answer here", None),
])
def test_extract_boxed(text: str, want: str | None) -> None:
    assert extract_boxed(text) == want


def test_answer_tag_wins_and_boxed_inside_it() -> None:
    assert extract_answer(r"\boxed{1} <answer>Paris</answer>") == "Paris"
    assert extract_answer(r"<answer>so \boxed{42}</answer>") == "42"


def test_pattern_uses_last_match_and_group() -> None:
    assert extract_answer("ANS: 3 ... ANS: 4", pattern=r"ANS: (\d+)") == "4"
    assert extract_answer("nothing", pattern=r"ANS: (\d+)") is None


def test_fallbacks() -> None:
    assert extract_answer("blah\n#### 1,234") == "1,234"
    assert extract_answer("So the answer is 12.") == "12"
    assert extract_answer("So the answer is 12.", fallbacks=False) is None


def test_prediction_from_record_kinds() -> None:
    assert prediction({"pred": 3}) == "3"
    traj = {"turns": [{"kind": "text", "text": r"x \boxed{2}"}, {"kind": "output", "text": r"\boxed{9}"}]}
    assert prediction({"trajectory": traj}) == "2"  # tool output is not the model's answer
    assert prediction({"trajectory": {**traj, "final_answer": "7"}}) == "7"
    assert prediction({"response": r"\boxed{x+1}"}) == "x+1"
    assert prediction({"question": "q"}) is None
