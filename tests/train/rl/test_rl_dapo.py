"""DAPO dynamic sampling (selector, accumulator) and overlong reward shaping."""

from __future__ import annotations

import pytest

from thor_cli.errors import ThorError, UsageError
from thor_cli.train.rl.dapo import (
    DynamicSampler,
    Group,
    is_mixed,
    is_truncated,
    mixed_group_ids,
    overlong_penalty,
    shape_overlong,
    shape_record,
)


def test_selector() -> None:
    assert mixed_group_ids([1, 0, 1, 1, 0.5, 0, 0, 1], list("aabbcddd")) == ["a", "d"]
    assert mixed_group_ids([], []) == []
    assert not is_mixed([0.5]) and not is_mixed([]) and is_mixed([0.5, 0.6])
    assert not is_mixed([0.5, 0.6], tol=0.2)
    with pytest.raises(ThorError, match="2 rewards for 1"):
        mixed_group_ids([1, 0], ["a"])


def g(gid: str, *rewards: float) -> Group[str]:
    return Group(gid, list(rewards), [f"{gid}{i}" for i in range(len(rewards))])


def test_accumulator_fills_to_target_and_reports_counts() -> None:
    s: DynamicSampler[str] = DynamicSampler(target_groups=2, max_gen_batches=5)
    s.add([g("A", 1, 0), g("B", 1, 1)])
    assert not s.done
    s.add([g("C", 0, 0.5), g("D", 1, 0), g("E", 0, 0)])
    assert s.done
    with pytest.raises(ThorError, match="take"):
        s.add([g("F", 1, 0)])
    groups, st = s.take()
    assert [x.gid for x in groups] == ["A", "C"] and groups[1].samples == ["C0", "C1"]
    assert (st.kept, st.dropped, st.surplus, st.gen_batches, st.full) == (2, 2, 1, 2, True)
    # it starts over for the next step
    assert not s.done and s.take()[1].gen_batches == 0


def test_accumulator_stops_at_its_generation_budget_short() -> None:
    s: DynamicSampler[str] = DynamicSampler(target_groups=3, max_gen_batches=2)
    s.add([g("A", 1, 1), g("B", 0, 1)])
    s.add([g("C", 0, 0)])
    assert s.done
    groups, st = s.take()
    assert [x.gid for x in groups] == ["B"] and (st.kept, st.dropped, st.gen_batches, st.full) == (1, 2, 2, False)
    with pytest.raises(UsageError):
        DynamicSampler(target_groups=0)


def test_overlong_penalty() -> None:
    kw = {"max_len": 1000, "buffer": 200}
    assert overlong_penalty(800, **kw) == 0.0  # up to max_len - buffer
    assert overlong_penalty(850, **kw) == pytest.approx(-50 / 200)
    assert overlong_penalty(1000, **kw) == -1.0
    assert overlong_penalty(1500, **kw) == -1.0  # the paper's -1 beyond max_len (verl keeps falling)
    assert overlong_penalty(900, factor=0.5, **kw) == pytest.approx(-0.25)
    with pytest.raises(UsageError, match="buffer"):
        overlong_penalty(10, max_len=100, buffer=0)


def test_only_model_tokens_count() -> None:
    mask = [1] * 850 + [0] * 500  # 850 sampled, 500 of tool output: counting all 1350 would give -1
    kw = {"max_len": 1000, "buffer": 200}
    assert shape_overlong(1.0, mask, truncated=False, **kw) == (pytest.approx(0.75), True)


def test_truncated_modes() -> None:
    mask = [1] * 100 + [0] * 900  # cut by context overflow after a long tool output: few model tokens
    kw = {"max_len": 1000, "buffer": 200}
    assert shape_overlong(0.0, mask, truncated=True, **kw) == (0.0, True)
    assert shape_overlong(0.0, mask, truncated=True, truncated_mode="mask", **kw) == (0.0, False)
    assert shape_overlong(0.0, mask, truncated=True, truncated_mode="penalise", **kw) == (-1.0, True)
    assert shape_overlong(1.0, mask, truncated=False, truncated_mode="mask", **kw) == (1.0, True)
    with pytest.raises(UsageError, match="truncated"):
        shape_overlong(0.0, mask, truncated=True, truncated_mode="drop", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("stop", "truncated"), [("max_tokens", True), ("context_overflow", True),
                                                 ("answer", False), ("eos", False), ("max_tool_calls", False),
                                                 (None, False)])
def test_truncation_comes_from_the_stop_reason(stop: str | None, truncated: bool) -> None:
    assert is_truncated(stop) is truncated
    # the last token says nothing: the record's mask ends on tool output either way
    rec = {"completion_mask": [1, 1, 0, 0], "trajectory": {"stop_reason": stop}}
    assert shape_record(rec, 1.0, max_len=10, buffer=5, truncated_mode="mask") == (1.0, not truncated)


def test_shape_record_needs_ids() -> None:
    with pytest.raises(ThorError, match="completion_mask"):
        shape_record({"id": "p", "trajectory": {}}, 1.0, max_len=10, buffer=5)
