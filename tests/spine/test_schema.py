"""Record types round-trip through their dicts with every field (nothing dropped when one is added),
authors decide what counts as a policy sample, and the schema version is checked on read."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

import pytest

from thor_cli.errors import InputError
from thor_cli.records.schema import (
    SCHEMA_VERSION,
    ExecResult,
    Grade,
    Problem,
    Retry,
    TokenSource,
    Trajectory,
    Turn,
)


def test_exec_result_to_dict_has_every_field_and_round_trips() -> None:
    res = ExecResult("error", stdout="a", stderr="b", error="ValueError: x", duration_ms=1.5, truncated=True)
    d = res.to_dict()
    assert list(d) == [f.name for f in fields(ExecResult)]  # the order of the dataclass, as asdict gives
    assert ExecResult.from_dict(d) == res


def _full(cls: type) -> Any:
    """An instance of ``cls`` whose every field differs from its default: a field that to_dict or
    from_dict forgot shows up as an inequality after the round trip."""
    exec_d = ExecResult("error", stdout="o", stderr="e", error="E: x", duration_ms=2.0, truncated=True).to_dict()
    values: dict[type, dict[str, Any]] = {
        Problem: dict(id="p1", question="q?", answer="4", source="s", task="code", tests="assert f()",
                      entry_point="f"),
        ExecResult: dict(status="timeout", stdout="o", stderr="e", error="T", duration_ms=3.0, truncated=True),
        Turn: dict(kind="code", text="```python\nprint(1)\n```", ids=[1, 2], logprobs=[-0.1, -0.2], exec=exec_d,
                   tool="python", author="critic"),
        Retry: dict(at_turn=2, dropped_text="x", dropped_ids=[3], reason="error", exec=exec_d),
        Grade: dict(correct=True, pred="4", gold="4", method="numeric", detail="d"),
        TokenSource: dict(tokenizer="abc", temperature=0.7, top_p=0.9, top_k=20),
    }
    if cls is Trajectory:
        return Trajectory(protocol="tapo", turns=[_full(Turn), Turn("output", "1\n", [5], exec=exec_d)],
                          retries=[_full(Retry)], final_answer="4", stop_reason="answer", n_tool_calls=3,
                          n_corrections=1)
    return cls(**values[cls])


@pytest.mark.parametrize("cls", [Problem, ExecResult, Turn, Retry, Grade, TokenSource, Trajectory])
def test_every_record_type_round_trips_with_every_field(cls: type) -> None:
    obj = _full(cls)
    for f in fields(cls):  # the fixture itself must set every field away from its default
        if f.default is not dataclasses.MISSING and cls is not Trajectory and f.name != "v":
            assert getattr(obj, f.name) != f.default, f"{cls.__name__}.{f.name} is left at its default"
    d = obj.to_dict()
    back = cls.from_record(d) if cls is Problem else cls.from_dict(d)
    assert back == obj
    assert back.to_dict() == d


def test_author_decides_the_policy_mask_and_sft_trains_on_every_author() -> None:
    traj = Trajectory(protocol="thor", turns=[
        Turn("text", "I compute ", [1, 2]),                                  # the policy
        Turn("code", "```python\nprint(6*7)\n```", [3, 4, 5], author="critic"),  # the critic's cell
        Turn("output", "```output\n42\n```", [6, 7]),                         # the tool
        Turn("text", "so 42", [8], author="data"),                            # a dataset's text
    ])
    assert traj.completion_mask == [1, 1, 0, 0, 0, 0, 0, 0]  # only what the policy sampled
    assert traj.learn_mask == [1, 1, 1, 1, 1, 0, 0, 1]       # all but tool output
    assert [t.who for t in traj.turns] == ["policy", "critic", "tool", "data"]


def test_default_authors_are_not_written_so_old_records_read_the_same() -> None:
    t = Turn("text", "a", [1], author="policy")
    assert "author" not in t.to_dict() and t.author is None
    assert "author" not in Turn("output", "o", [2], author="tool").to_dict()
    assert Turn.from_dict({"kind": "output", "text": "o", "ids": [2]}).who == "tool"


def test_an_unknown_author_is_an_input_error() -> None:
    with pytest.raises(InputError, match="author"):
        Turn.from_dict({"kind": "text", "text": "a", "author": "martian"})


@pytest.mark.parametrize("v", [SCHEMA_VERSION + 1, 0, "1", None])
def test_a_trajectory_from_an_unknown_schema_version_is_refused(v: Any) -> None:
    with pytest.raises(InputError, match="schema version"):
        Trajectory.from_dict({"v": v, "protocol": "thor", "turns": []})


def test_token_source_needs_a_fingerprint() -> None:
    with pytest.raises(InputError, match="token_source"):
        TokenSource.from_dict({"temperature": 1.0})


def test_tokenizer_fingerprint_tells_vocabularies_apart(tok: Any) -> None:
    from thor_cli.backends.base import tokenizer_fingerprint

    class Other:
        def get_vocab(self) -> dict[str, int]:
            return {**tok.get_vocab(), "<extra>": 10**6}

    fp = tokenizer_fingerprint(tok)
    assert len(fp) == 16 and fp == tokenizer_fingerprint(tok)
    assert tokenizer_fingerprint(Other()) != fp
