"""Record types round-trip through their dicts with every field (nothing dropped when one is added)."""

from __future__ import annotations

from dataclasses import fields

from thor_cli.records.schema import ExecResult


def test_exec_result_to_dict_has_every_field_and_round_trips() -> None:
    res = ExecResult("error", stdout="a", stderr="b", error="ValueError: x", duration_ms=1.5, truncated=True)
    d = res.to_dict()
    assert list(d) == [f.name for f in fields(ExecResult)]  # the order of the dataclass, as asdict gives
    assert ExecResult.from_dict(d) == res
