"""THOR's rollout filters and step level on hand-built trajectory dicts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from thor_cli.errors import ThorError
from thor_cli.train.rl.filters import (
    ends_with_boxed,
    failed_cells,
    has_failed_cell,
    reject_reason,
    sampled_tokens,
    survivors,
    too_short,
)
from thor_cli.train.rl.step import StepCut, combine_levels, step_cut, step_loss_mask, step_reward

OK = {"status": "ok", "stdout": "1\n"}
SILENT = {"status": "ok", "stdout": "  \n"}  # a python cell that printed nothing: failed (no_output)
ERR = {"status": "error", "stdout": "", "error": "ValueError: bad"}


def t(kind: str, n: int, text: str = "x", exec: dict[str, Any] | None = None, tool: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "text": text, "ids": list(range(n))}
    if kind != "text":
        d["tool"] = tool or "python"
    if exec is not None:
        d["exec"] = exec
    return d


def traj(*turns: dict[str, Any], protocol: str = "thor", **kw: Any) -> dict[str, Any]:
    return {"protocol": protocol, "turns": list(turns), "retries": [], **kw}


# text0 code1 out2(ok) text3 code4 out5(ERROR) text6 code7 out8(silent) text9
TWO_FAILS = traj(t("text", 30), t("code", 10), t("output", 5, exec=OK), t("text", 40), t("code", 8),
                 t("output", 3, exec=ERR), t("text", 20), t("code", 6), t("output", 2, exec=SILENT),
                 t("text", 15, "so \\boxed{2}"))


def test_failed_cells_follow_the_protocol_rule() -> None:
    assert failed_cells(TWO_FAILS) == [4, 7]
    # a search that returns nothing is not a failure (only a silent python cell is)
    search = traj(t("text", 3), t("code", 2, tool="search"), t("output", 1, exec=SILENT, tool="search"))
    assert failed_cells(search) == []
    # a code turn that never ran (stopped at the tool budget) is not a failed cell
    assert failed_cells(traj(t("text", 3), t("code", 2))) == []
    assert has_failed_cell(TWO_FAILS)
    with_retry = traj(t("text", 3, "\\boxed{1}"), retries=[{"at_turn": 0, "reason": "error"}])
    assert has_failed_cell(with_retry) and not has_failed_cell(with_retry, count_retries=False)


def test_step_cut_is_before_the_first_failing_cell_not_the_last() -> None:
    # the first failure is the code turn 4; before it, 40 sampled tokens back to the output at 2
    assert step_cut(TWO_FAILS) == StepCut(cut_turn=4, backoff_tokens=40)
    assert step_cut(TWO_FAILS, suffix_tokens=25) == (4, 25)
    assert step_cut(traj(t("text", 3, "\\boxed{1}"))) is None


def test_step_backoff_spans_text_turns_but_never_a_tool_output_or_the_prompt() -> None:
    # two text turns (60 + 70) before the failing cell: L_suf = 100 of them
    tr = traj(t("text", 60), t("text", 70), t("code", 5), t("output", 2, exec=ERR))
    assert step_cut(tr) == (2, 100)
    # the cell right after a tool output: nothing to back off
    tr = traj(t("text", 60), t("code", 5), t("output", 2, exec=OK), t("code", 5), t("output", 2, exec=ERR))
    assert step_cut(tr) == (3, 0)
    # the very first turn: back to the prompt
    assert step_cut(traj(t("code", 5), t("output", 2, exec=ERR))) == (0, 0)
    # fewer than 100 tokens before it in the trajectory: only those
    assert step_cut(traj(t("text", 7), t("code", 5), t("output", 2, exec=ERR))) == (1, 7)
    # text a critic wrote is not the policy's to back off (TrajState.back_off stops there too)
    critic = {**t("text", 30), "author": "critic"}
    assert step_cut(traj(critic, t("text", 20), t("code", 5), t("output", 2, exec=ERR))) == (2, 20)
    with pytest.raises(ThorError, match="drop-ids"):
        step_cut(traj({"kind": "text", "text": "abc"}, t("code", 5), t("output", 2, exec=ERR)))


def continuation(*new: dict[str, Any], prefix: tuple[dict[str, Any], ...] = (), **kw: Any) -> dict[str, Any]:
    turns = [*prefix, *new]
    return {"trajectory": traj(*turns), "error": None,
            "continued_from": {"cut_turn": len(prefix), "backoff_tokens": 0, "prefix_turns": len(prefix),
                               "prefix_tokens": sum(len(x["ids"]) for x in prefix)}, **kw}


PREFIX = (t("text", 4), t("code", 2), t("output", 1, exec=ERR), t("text", 3))  # a failed cell in the prefix


def test_step_reward() -> None:
    assert step_reward(continuation(t("text", 2), t("code", 3), t("output", 2, exec=OK), prefix=PREFIX)) == 1.0
    assert step_reward(continuation(t("text", 2), t("code", 3), t("output", 2, exec=ERR), prefix=PREFIX)) == 0.0
    assert step_reward(continuation(t("code", 3), t("output", 2, exec=SILENT), prefix=PREFIX)) == 0.0
    assert step_reward(continuation(t("code", 3), t("output", 2, exec=SILENT, tool="search"))) == 1.0
    assert step_reward(continuation(t("text", 2, "\\boxed{1}"), prefix=PREFIX)) == 0.0  # no new cell
    assert step_reward(continuation(t("text", 2), t("code", 3), prefix=PREFIX)) == 0.0  # never ran
    assert step_reward(continuation(t("text", 2), error="BackendError: down")) is None
    with pytest.raises(ThorError, match="continued_from"):
        step_reward({"trajectory": TWO_FAILS})


def test_step_loss_mask_zeroes_the_prefix() -> None:
    f = continuation(t("text", 2), t("code", 1), t("output", 2, exec=OK), prefix=(t("text", 2), t("output", 1)),
                     completion_mask=[1, 1, 0, 1, 1, 1, 0, 0])
    assert step_loss_mask(f) == [0, 0, 0, 1, 1, 1, 0, 0]
    with pytest.raises(ThorError):
        step_loss_mask({"continued_from": {"prefix_tokens": 1}})


def test_combine_levels() -> None:
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    out = combine_levels(a, b, step_weight=0.5)
    out.backward()
    assert out.item() == 3.5 and a.grad.item() == 1.0 and b.grad.item() == 0.5
    assert combine_levels(a, None) is a


def test_length_counts_sampled_ids_only() -> None:
    assert sampled_tokens(TWO_FAILS) == 30 + 10 + 40 + 8 + 20 + 6 + 15
    tr = traj(t("text", 5), t("code", 2), t("output", 500, exec=OK), t("text", 3, "\\boxed{1}"))
    assert too_short(tr, 11) and not too_short(tr, 10)
    tr["turns"][0]["author"] = "critic"
    assert sampled_tokens(tr) == 2 + 3


@pytest.mark.parametrize(("tail", "ok"), [("so \\boxed{42}.", True), ("\\boxed{}", False), ("\\boxed{ }", False),
                                          ("no answer", False), ("\\boxed{4", False)])
def test_ends_with_boxed(tail: str, ok: bool) -> None:
    assert ends_with_boxed(traj(t("text", 2), t("code", 1), t("output", 1, exec=OK), t("text", 2, tail))) is ok


def test_a_boxed_before_the_last_tool_output_is_not_at_the_end() -> None:
    tr = traj(t("text", 2, "guess \\boxed{3}"), t("code", 1), t("output", 1, "\\boxed{9}", exec=OK), t("text", 1, "hmm"))
    assert not ends_with_boxed(tr)


def test_reject_reason_order() -> None:
    assert reject_reason(TWO_FAILS) == "failed_cell"
    clean = traj(t("text", 5), t("code", 2), t("output", 1, exec=OK), t("text", 3, "\\boxed{1}"))
    assert reject_reason(clean) is None
    assert reject_reason(clean, min_tokens=11) == "too_short"
    assert reject_reason(traj(t("text", 50, "I give up"))) == "no_boxed"


def test_group_survivors() -> None:
    ids = ["a", "a", "a", "b", "b", "c"]
    keep = [True, False, True, True, False, True]
    assert survivors(ids, keep, 2) == [True, False, True, False, False, False]
    assert survivors(ids, keep, 1) == keep
    with pytest.raises(ThorError):
        survivors(ids, keep[:2], 1)
