"""GRPO / Dr.GRPO / leave-one-out advantages against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from thor_cli.errors import ThorError, UsageError
from thor_cli.train.rl.advantages import group_advantages, group_index


def approx(xs: torch.Tensor, want: list[float], tol: float = 1e-5) -> bool:
    return xs.shape == (len(want),) and all(abs(a - b) <= tol for a, b in zip(xs.tolist(), want, strict=True))


def test_grpo_one_group() -> None:
    # mean 0.5; deviations +-0.5; sample std sqrt((4 * 0.25) / 3) = sqrt(1/3) = 0.577350
    adv = group_advantages([1.0, 0.0, 0.0, 1.0], ["g"] * 4)
    s = math.sqrt(1 / 3) + 1e-6
    assert approx(adv, [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    assert abs(adv[0].item() - 0.866025) < 1e-5


def test_groups_by_id_not_position_and_of_mixed_sizes() -> None:
    # step group "s" of 2 and trajectory group "t" of 3, interleaved
    # t: [2, 0, 1] -> mean 1, dev [1, -1, 0], std sqrt(2 / 2) = 1
    # s: [1, 0]    -> mean 0.5, dev [0.5, -0.5], std sqrt(0.5 / 1) = 0.707107
    adv = group_advantages([2.0, 1.0, 0.0, 0.0, 1.0], ["t", "s", "t", "s", "t"])
    s = math.sqrt(0.5) + 1e-6
    assert approx(adv, [1 / (1 + 1e-6), 0.5 / s, -1 / (1 + 1e-6), -0.5 / s, 0.0])


def test_dr_grpo_has_no_std_scaling() -> None:
    assert approx(group_advantages([2.0, 0.0, 1.0], [7, 7, 7], scale="none"), [1.0, -1.0, 0.0])


def test_leave_one_out() -> None:
    # baselines: (0 + 1) / 2 = 0.5, (2 + 1) / 2 = 1.5, (2 + 0) / 2 = 1
    assert approx(group_advantages([2.0, 0.0, 1.0], "aaa", scale="none", baseline="loo"), [1.5, -1.5, 0.0])
    # two samples: each is compared with the other one
    assert approx(group_advantages([1.0, 0.0], "aa", scale="none", baseline="loo"), [1.0, -1.0])
    # with std scaling: 1 / (sqrt(0.5) + 1e-6)
    assert approx(group_advantages([1.0, 0.0], "aa", baseline="loo"), [1 / (math.sqrt(0.5) + 1e-6),
                                                                        -1 / (math.sqrt(0.5) + 1e-6)])


def test_eps_and_population_std() -> None:
    # std of [1, 0] is sqrt(0.5) = 0.707107; eps 1.0 -> 0.5 / 1.707107 = 0.292893
    assert approx(group_advantages([1.0, 0.0], "aa", eps=1.0), [0.292893, -0.292893])
    # population std of [1, 0, 0, 1] is 0.5 -> +-0.5 / 0.5
    assert approx(group_advantages([1.0, 0.0, 0.0, 1.0], "aaaa", unbiased_std=False, eps=0.0), [1, -1, -1, 1])


@pytest.mark.parametrize("baseline", ["mean", "loo"])
@pytest.mark.parametrize("scale", ["std", "none"])
def test_all_equal_and_singletons_give_exact_zeros(scale: str, baseline: str) -> None:
    adv = group_advantages([0.3, 0.3, 0.3, 5.0, 1.0, 0.0], ["eq", "eq", "eq", "one", "m", "m"],
                           scale=scale, baseline=baseline)  # type: ignore[arg-type]
    assert adv[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert adv[4].item() > 0 > adv[5].item()


def test_tensor_in_tensor_out_without_grad() -> None:
    r = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    adv = group_advantages(r, ["a", "a"], scale="none")
    assert adv.dtype == torch.float64 and not adv.requires_grad and adv.tolist() == [0.5, -0.5]
    assert group_advantages([], []).shape == (0,)


def test_bad_input() -> None:
    with pytest.raises(ThorError, match="3 rewards"):
        group_advantages([1.0, 0.0, 1.0], ["a", "a"])
    with pytest.raises(UsageError, match="scale"):
        group_advantages([1.0], ["a"], scale="mad")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="baseline"):
        group_advantages([1.0], ["a"], baseline="median")  # type: ignore[arg-type]


def test_group_index_first_seen_order() -> None:
    idx, ids = group_index([("p", 1), "x", ("p", 1)])
    assert idx.tolist() == [0, 1, 0] and ids == [("p", 1), "x"]
