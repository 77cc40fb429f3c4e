"""TAPO's reward: format violations, task scores, the tool budget and the per-call penalty."""

from __future__ import annotations

from typing import Any

import pytest

from thor_cli.errors import UsageError
from thor_cli.grading import GradeConfig, Grader
from thor_cli.records.schema import Grade
from thor_cli.train.rl.rewards import (
    TapoRewardConfig,
    format_violation,
    numeric_close,
    tapo_reward,
    tapo_rewards,
    task_score,
    token_f1,
)


def tapo(*texts: str, calls: int = 0, stop: str = "answer") -> dict[str, Any]:
    """Model text turns; each "<code>…</code>" turn is followed by a tool output turn."""
    turns: list[dict[str, Any]] = []
    for x in texts:
        turns.append({"kind": "code" if x.startswith("<code>") else "text", "text": x})
        if x.startswith("<code>"):
            turns.append({"kind": "output", "text": "\n<response>\n2\n</response>\n", "exec": {"status": "ok"}})
    return {"protocol": "tapo", "turns": turns, "n_tool_calls": calls, "stop_reason": stop}


GOOD = tapo("<think>add</think>", "<code>print(1+1)</code>", "<think>so 2</think><answer>2</answer>", calls=1)


@pytest.mark.parametrize(("trajectory", "why"), [
    (GOOD, None),
    (tapo("<think>x</think>"), "no_answer"),
    (tapo("<think>x</think><answer>2"), "no_answer"),  # cut off inside the answer
    (tapo("<answer>1</answer><answer>2</answer>"), "multiple_answers"),
    (tapo("<answer>  </answer>"), "empty_answer"),
    (tapo("<think>x<search>q</search></think><answer>2</answer>"), "unbalanced:search"),
    (tapo("<think>x</code><answer>2</answer>"), "unbalanced:code"),
    (tapo("</think><answer>2</answer>"), "unbalanced:think"),
    (tapo("<think>x<answer>2</answer>"), "unbalanced:answer"),
    (tapo("<think>x"), "unbalanced:think"),
    (tapo("<think>x</think><response>2</response><answer>2</answer>"), "fake_response"),
    (tapo("<code>a</code>", "<code>b</code>", "<answer>2</answer>", calls=5), "over_budget"),
    (tapo("<code>a</code>", "<answer>2</answer>", calls=1, stop="max_tool_calls"), "over_budget"),
])
def test_format_violations(trajectory: dict[str, Any], why: str | None) -> None:
    assert format_violation(trajectory) == why


def test_tool_output_is_not_checked_as_model_text() -> None:
    # the engine's own <response> splices are output turns, not the model's writing
    assert format_violation(GOOD) is None and "<response>" in GOOD["turns"][2]["text"]


def test_token_f1_by_hand() -> None:
    # "Eiffel Tower" vs "Eiffel Tower in Paris": common 2, p = 2/2, r = 2/4, F1 = 2 * 1 * 0.5 / 1.5
    assert token_f1("The Eiffel Tower!", "Eiffel Tower in Paris") == pytest.approx(2 / 3)
    assert token_f1("Paris", ["France", "paris"]) == 1.0  # the best alias
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation


def test_numeric_tolerance() -> None:
    assert numeric_close("3.1416", "3.14159")  # |diff| 1e-5 <= 1e-3 * 3.14
    assert not numeric_close("3.2", "3.14159")
    assert numeric_close("1,000", "1000.4")  # 0.4 <= 1e-3 * 1000.4
    assert numeric_close("\\frac{1}{2}", "0.5") and numeric_close("0", "0.0000001")  # abs_tol 1e-6
    assert not numeric_close("about five", "5")


def test_task_scores() -> None:
    assert task_score("\\frac{1}{2}", "0.5", "math") == 1.0  # thor's grader (fast path)
    assert task_score("0.51", "0.5", "math") == 0.0
    assert task_score("0.5004", "0.5", "numeric") == 1.0
    assert task_score("Eiffel Tower", "Eiffel Tower in Paris", "fact") == pytest.approx(2 / 3)
    assert task_score("x", "7", "math", math_correct=True) == 1.0  # a verdict from a batch grader wins
    assert task_score(None, "7", "math") == 0.0 and task_score(" ", "7", "fact") == 0.0
    with pytest.raises(UsageError, match="kind"):
        task_score("1", "1", "code")  # type: ignore[arg-type]


def test_tapo_reward_on_records() -> None:
    rec = {"id": "q", "answer": "2", "task": "math", "trajectory": GOOD}
    assert tapo_reward(rec) == (1.0, "scored")
    # 1 call at 0.1 each: 1 - 0.1
    assert tapo_reward(rec, cfg=TapoRewardConfig(call_penalty=0.1))[0] == pytest.approx(0.9)
    # the penalty never takes a valid answer below 0 (below a format violation's -1)
    assert tapo_reward({**rec, "answer": "3"}, cfg=TapoRewardConfig(call_penalty=0.5)) == (0.0, "scored")
    # a budget of 0 calls makes the same trajectory a violation
    assert tapo_reward(rec, cfg=TapoRewardConfig(max_tool_calls=0)) == (-1.0, "over_budget")
    fact = {"id": "f", "task": "qa", "answer": ["Paris", "City of Paris"],
            "trajectory": tapo("<think>x</think><answer>paris, France</answer>")}
    # vs "Paris": p = 1/2, r = 1 -> 2/3; vs "City of Paris": common 1, p 1/2, r 1/3 -> 0.4
    assert tapo_reward(fact)[0] == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="gold"):
        tapo_reward({"id": "g", "trajectory": GOOD})


def test_a_batch_graded_by_thors_grader() -> None:
    recs = [
        {"id": "a", "answer": "1/2", "trajectory": tapo("<answer>\\frac{1}{2}</answer>")},
        {"id": "b", "answer": ["7", "0.5"], "trajectory": tapo("<answer>0.5</answer>")},  # any alias
        {"id": "c", "answer": "3", "trajectory": tapo("<answer>4</answer>")},
        {"id": "d", "answer": "3", "trajectory": tapo("no answer")},
        {"id": "e", "task": "qa", "answer": "Paris", "trajectory": tapo("<answer>Paris</answer>")},
    ]
    with Grader(GradeConfig(workers=1)) as g:
        got = tapo_rewards(recs, grader=g)
    assert got == [(1.0, "scored"), (1.0, "scored"), (0.0, "scored"), (-1.0, "no_answer"), (1.0, "scored")]
    assert tapo_rewards(recs) == got  # the same verdicts graded in this process
    with pytest.raises(UsageError, match="kinds"):
        tapo_rewards(recs, kinds=["math"])


def test_the_batch_takes_the_graders_verdicts() -> None:
    class Lenient:  # a grader that accepts everything: its verdicts must reach the rewards
        def __init__(self) -> None:
            self.items: list[dict[str, Any]] = []

        def grade_math(self, items: list[dict[str, Any]]) -> list[Grade]:
            self.items += items
            return [Grade(True, it["pred"], it["answer"], "stub") for it in items]

    recs = [{"id": "c", "answer": ["3", "three"], "trajectory": tapo("<answer>4</answer>")},
            {"id": "d", "answer": "3", "trajectory": tapo("no answer")}]
    g = Lenient()
    assert tapo_rewards(recs, grader=g) == [(1.0, "scored"), (-1.0, "no_answer")]  # type: ignore[arg-type]
    assert g.items == [{"pred": "4", "answer": "3"}, {"pred": "4", "answer": "three"}]  # malformed: not graded
