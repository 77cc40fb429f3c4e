"""PPO clip (clip-higher, dual-clip), aggregation, KL and positive NLL against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from thor_cli.errors import ThorError, UsageError
from thor_cli.train.rl.losses import aggregate, kl_penalty, policy_loss, positive_nll

RATIOS = [1.5, 0.5, 1.1, 4.0]


def logps(ratios: list[float], old: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A leaf ``logp`` and ``old_logp`` (1, T) whose ratios are ``ratios``."""
    old_t = torch.full((1, len(ratios)), old, dtype=torch.float64)
    logp = (old_t + torch.log(torch.tensor([ratios], dtype=torch.float64))).requires_grad_(True)
    return logp, old_t


def test_positive_advantage_clip_high() -> None:
    logp, old = logps(RATIOS)
    loss, st = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 4))
    # per token max(-r, -clip(r, 0.8, 1.28)): 1.5 -> -1.28, 0.5 -> -0.5, 1.1 -> -1.1, 4 -> -1.28
    assert loss.item() == pytest.approx((-1.28 - 0.5 - 1.1 - 1.28) / 4)  # -1.04
    assert (st["clip_frac_high"], st["clip_frac_low"], st["dual_clip_frac"]) == (0.5, 0.0, 0.0)
    assert st["ratio_max"] == pytest.approx(4.0) and st["ratio_min"] == pytest.approx(0.5)
    assert st["ratio_mean"] == pytest.approx(sum(RATIOS) / 4) and st["active_tokens"] == 4
    # k3 of KL(old || new): mean(r - 1 - ln r)
    assert st["approx_kl"] == pytest.approx(sum(r - 1 - math.log(r) for r in RATIOS) / 4)
    loss.backward()
    # d(-r)/dlogp = -r where the unclipped term is taken, 0 where the clip binds; / 4 tokens
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -0.5 / 4, -1.1 / 4, 0.0])


def test_negative_advantage_dual_clip() -> None:
    logp, old = logps(RATIOS)
    loss, st = policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 4), dual_clip=3.0)
    # per token min(max(r, clip(r)), 3): 1.5, 0.8 (low clip), 1.1, 3 (dual clip of 4)
    assert loss.item() == pytest.approx((1.5 + 0.8 + 1.1 + 3.0) / 4)  # 1.6
    assert (st["clip_frac_low"], st["clip_frac_high"], st["dual_clip_frac"]) == (0.25, 0.0, 0.25)
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([1.5 / 4, 0.0, 1.1 / 4, 0.0])

    logp, old = logps(RATIOS)
    loss, st = policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 4), dual_clip=None)
    assert loss.item() == pytest.approx((1.5 + 0.8 + 1.1 + 4.0) / 4) and st["dual_clip_frac"] == 0.0


def test_symmetric_clip_when_eps_high_equals_eps_low() -> None:
    logp, old = logps(RATIOS)
    loss, _ = policy_loss(logp, old, torch.tensor([2.0]), torch.ones(1, 4), eps_high=0.2)
    # A = 2: -2 * [1.2, 0.5, 1.1, 1.2]
    assert loss.item() == pytest.approx(-2 * (1.2 + 0.5 + 1.1 + 1.2) / 4)


def test_masked_tokens_get_no_gradient_even_with_garbage_logprobs() -> None:
    logp, old = logps(RATIOS)
    with torch.no_grad():
        logp[0, 0] = 1e4  # a padded position: exp would overflow
    mask = torch.tensor([[0, 1, 1, 1]])
    loss, st = policy_loss(logp, old, torch.tensor([1.0]), mask)
    assert loss.item() == pytest.approx((-0.5 - 1.1 - 1.28) / 3)
    loss.backward()
    g = logp.grad.tolist()[0]
    assert g[0] == 0.0 and all(math.isfinite(x) for x in g) and g[2] == pytest.approx(-1.1 / 3)
    assert st["active_tokens"] == 3 and st["clip_frac_high"] == pytest.approx(1 / 3)


def test_per_token_advantages() -> None:
    logp, old = logps(RATIOS)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, st = policy_loss(logp, old, adv, torch.ones(1, 4))
    # tokens: 1.5 A+ -> -1.28; 0.5 A+ -> -0.5; 1.1 A- -> 1.1; 4 A- -> 3 (dual)
    assert loss.item() == pytest.approx((-1.28 - 0.5 + 1.1 + 3.0) / 4)
    assert (st["clip_frac_high"], st["dual_clip_frac"]) == (0.25, 0.25)


def test_is_weights_scale_the_per_token_loss() -> None:
    logp, old = logps(RATIOS)
    w = torch.tensor([[2.0, 0.0, 1.0, 1.0]])
    loss, _ = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 4), is_weights=w)
    assert loss.item() == pytest.approx((2 * -1.28 + 0 - 1.1 - 1.28) / 4)


VALUES = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 0.0, 0.0], [7.0, 7.0, 7.0, 7.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize(("mode", "want"), [
    ("token-mean", (1 + 2 + 3 + 10) / 4),  # 4 active tokens
    ("seq-mean-token-mean", (2 + 10) / 2),  # row means 2 and 10; the empty row is left out
    ("seq-mean-token-sum", (6 + 10) / 2),  # row sums 6 and 10
])
def test_aggregation_modes(mode: str, want: float) -> None:
    assert aggregate(VALUES, MASK, mode).item() == pytest.approx(want)  # type: ignore[arg-type]


def test_token_mean_with_a_global_token_count() -> None:
    # this rank's sum 16; 10 active tokens over 2 ranks: 16 * 2 / 10, so that DDP's mean over ranks
    # of (16 * 2 / 10) and (other_sum * 2 / 10) is (16 + other_sum) / 10
    assert aggregate(VALUES, MASK, global_tokens=10, world_size=2).item() == pytest.approx(3.2)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_empty_mask_is_a_zero_that_backpropagates(mode: str) -> None:
    logp, old = logps(RATIOS)
    loss, st = policy_loss(logp, old, torch.tensor([1.0]), torch.zeros(1, 4), agg=mode)  # type: ignore[arg-type]
    assert loss.item() == 0.0 and st["active_tokens"] == 0 and math.isnan(st["ratio_mean"])
    loss.backward()
    assert logp.grad.tolist()[0] == [0.0] * 4


def test_kl_estimators() -> None:
    ref = torch.tensor([[-0.5, -0.5, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    # d = logp - ref = [0.5, -0.5]; k1: mean 0; k2: 0.5 * 0.25 = 0.125
    # k3 = exp(-d) + d - 1: exp(-0.5) - 0.5 = 0.106531, exp(0.5) - 1.5 = 0.148721
    want = {"k1": 0.0, "k2": 0.125, "k3": (math.exp(-0.5) - 0.5 + math.exp(0.5) - 1.5) / 2}
    for est, w in want.items():
        logp = torch.tensor([[0.0, -1.0, 9.0]], dtype=torch.float64, requires_grad=True)
        loss, st = kl_penalty(logp, ref, mask, beta=0.1, estimator=est)  # type: ignore[arg-type]
        assert loss.item() == pytest.approx(0.1 * w) and st["kl"] == pytest.approx(w)
        loss.backward()
        assert logp.grad[0, 2].item() == 0.0
    # k3's gradient: beta * (1 - exp(-d)) / 2 tokens
    assert logp.grad[0, 0].item() == pytest.approx(0.1 * (1 - math.exp(-0.5)) / 2)


def test_positive_nll_selects_positive_advantage_samples() -> None:
    logp = torch.tensor([[-0.5, -1.0, -2.0], [-0.1, -0.2, -0.3]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    loss, st = positive_nll(logp, torch.tensor([1.0, -1.0]), mask)
    assert loss.item() == pytest.approx((0.5 + 1.0) / 2) and st["nll_tokens"] == 2
    loss.backward()
    assert logp.grad.tolist() == [[-0.5, -0.5, 0.0], [0.0, 0.0, 0.0]]
    # per-token advantages select tokens; zero advantage is not positive
    loss, _ = positive_nll(logp.detach(), torch.tensor([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]]), mask)
    assert loss.item() == pytest.approx((1.0 + 0.1) / 2)
    loss, st = positive_nll(logp, torch.tensor([0.0, -1.0]), mask)
    assert loss.item() == 0.0 and st["nll_tokens"] == 0


def test_bad_shapes_and_settings() -> None:
    logp, old = logps(RATIOS)
    with pytest.raises(ThorError, match="mask shape"):
        policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 3))
    with pytest.raises(ThorError, match="advantages"):
        policy_loss(logp, old, torch.tensor([1.0, 2.0]), torch.ones(1, 4))
    with pytest.raises(UsageError, match="dual_clip"):
        policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 4), dual_clip=1.0)
    with pytest.raises(UsageError, match="aggregation"):
        aggregate(VALUES, MASK, "sum")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="token-mean"):
        aggregate(VALUES, MASK, "seq-mean-token-mean", global_tokens=10)
