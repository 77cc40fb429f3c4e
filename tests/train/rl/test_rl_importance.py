"""Rollout-vs-trainer importance weights: token/sequence level, truncate/mask, against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from thor_cli.errors import ThorError, UsageError
from thor_cli.train.rl.importance import rollout_is_weights

OLD = torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64)
# old - rollout = [ln 3, ln 0.5, 0]: raw ratios 3, 0.5, 1
ROLL = OLD - torch.log(torch.tensor([[3.0, 0.5, 1.0]], dtype=torch.float64))
ONES = torch.ones(1, 3)


def close(t: torch.Tensor, want: list[float]) -> bool:
    return t.tolist()[0] == pytest.approx(want)


def test_token_truncate_and_mask() -> None:
    w, st = rollout_is_weights(OLD, ROLL, ONES, cap=2.0)
    assert close(w, [2.0, 0.5, 1.0])
    assert st["ratio_mean"] == pytest.approx((3 + 0.5 + 1) / 3) and st["ratio_max"] == pytest.approx(3.0)
    assert st["capped_frac"] == pytest.approx(1 / 3) and st["weight_mean"] == pytest.approx(3.5 / 3)
    w, st = rollout_is_weights(OLD, ROLL, ONES, mode="mask", cap=2.0)
    assert close(w, [0.0, 0.5, 1.0]) and st["weight_mean"] == pytest.approx(0.5)
    # a lower bound too: 0.5 < 0.6
    w, st = rollout_is_weights(OLD, ROLL, ONES, cap=2.0, cap_min=0.6)
    assert close(w, [2.0, 0.6, 1.0]) and st["capped_frac"] == pytest.approx(2 / 3)
    w, _ = rollout_is_weights(OLD, ROLL, ONES, mode="mask", cap=2.0, cap_min=0.6)
    assert close(w, [0.0, 0.0, 1.0])


def test_sequence_level() -> None:
    # row 0: ln 3 + ln 0.5 = ln 1.5 (its third token is masked: its ln 10 does not count)
    old = torch.zeros(3, 3, dtype=torch.float64)
    diff = torch.log(torch.tensor([[3.0, 0.5, 10.0], [3.0, 1.0, 1.0], [5.0, 5.0, 5.0]], dtype=torch.float64))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    w, st = rollout_is_weights(old, old - diff, mask, level="sequence", cap=2.0)
    assert w.tolist()[0] == pytest.approx([1.5, 1.5, 0.0])
    assert w.tolist()[1] == pytest.approx([2.0, 2.0, 2.0])  # ratio 3 truncated
    assert w.tolist()[2] == [0.0, 0.0, 0.0]  # no active token: not a unit
    assert st["ratio_mean"] == pytest.approx((1.5 + 3) / 2) and st["capped_frac"] == pytest.approx(0.5)
    w, _ = rollout_is_weights(old, old - diff, mask, level="sequence", mode="mask", cap=2.0)
    assert w.tolist()[1] == [0.0, 0.0, 0.0] and w.tolist()[0] == pytest.approx([1.5, 1.5, 0.0])


def test_long_drift_stays_finite_and_nan_means_no_correction() -> None:
    old = torch.zeros(1, 200, dtype=torch.float64)
    w, st = rollout_is_weights(old, old - 1.0, torch.ones(1, 200), level="sequence", cap=2.0)  # e^200
    assert w.tolist()[0] == [2.0] * 200 and math.isfinite(st["ratio_max"])
    roll = torch.tensor([[float("nan"), -1.0]], dtype=torch.float64)
    w, _ = rollout_is_weights(torch.tensor([[-3.0, -1.0]], dtype=torch.float64), roll, torch.ones(1, 2))
    assert w.tolist()[0] == [1.0, 1.0]


def test_weights_carry_no_gradient_and_zero_on_masked_tokens() -> None:
    old = OLD.clone().requires_grad_(True)
    w, _ = rollout_is_weights(old, ROLL, torch.tensor([[1, 0, 1]]))
    assert not w.requires_grad and close(w, [2.0, 0.0, 1.0])
    w, st = rollout_is_weights(OLD, ROLL, torch.zeros(1, 3))
    assert w.tolist()[0] == [0.0] * 3 and st["capped_frac"] == 0.0 and math.isnan(st["ratio_mean"])


def test_bad_settings() -> None:
    with pytest.raises(UsageError, match="level"):
        rollout_is_weights(OLD, ROLL, ONES, level="geo")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="mode"):
        rollout_is_weights(OLD, ROLL, ONES, mode="clip")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cap_min"):
        rollout_is_weights(OLD, ROLL, ONES, cap=2.0, cap_min=3.0)
    with pytest.raises(ThorError, match="same"):
        rollout_is_weights(OLD, ROLL[:, :2], ONES)
