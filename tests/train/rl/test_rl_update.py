"""``update`` on the tiny model: the LM head runs on completion positions only, and that changes
nothing -- the loss, the statistics and the weights after the step equal those of a model that
computes every position's logits."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from thor_cli.train.rl.collect import RLSample
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.update import update


class _FullLogits(torch.nn.Module):
    """The same model, but it ignores ``logits_to_keep`` (as a model without the argument would)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def _samples() -> list[RLSample]:
    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(5, 200, (n,), generator=g).tolist()

    out = []
    # prompts of different lengths, a masked (tool output) stretch, and rollout log-probs on one
    for i, (p, c) in enumerate([(7, 5), (12, 9), (4, 11), (9, 3)]):
        mask = [1] * c
        if c > 6:
            mask[2:5] = [0, 0, 0]
        lp = [-1.5] * c if i == 1 else None
        out.append(RLSample(f"g{i // 2}", "traj", ids(p), ids(c), mask, lp, float(i % 2 == 0)))
    return out


def test_update_on_completion_logits_equals_full_logits(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = RLConfig(micro_batch=2, nll_alpha=0.01, beta=0.0)
    models = [copy.deepcopy(base), _FullLogits(copy.deepcopy(base))]
    stats, params = [], []
    for m in models:
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        stats.append(update(m, opt, _samples(), cfg, temperature=0.8, top_k=0, top_p=1.0, pad_id=0))
        params.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert stats[0]["loss"] != 0.0 and stats[0].keys() == stats[1].keys()
    for k in stats[0]:
        assert abs(stats[0][k] - stats[1][k]) < 1e-5, k
    moved = (params[0] - torch.cat([p.detach().flatten() for p in base.parameters()])).abs().max()
    assert moved > 1e-4  # the step did something, and both did the same thing
    assert torch.allclose(params[0], params[1], atol=1e-6)


def test_minibatch_split_deals_each_level() -> None:
    from thor_cli.train.rl.update import minibatch_split

    s = _samples() + [RLSample("t", "traj", [1], [2], [1], None, 0.0)]
    s += [RLSample(f"s{i}", "step", [1], [2], [1], None, 0.0) for i in range(3)]
    # traj samples 0-4 and step samples 5-7: each mini-batch gets a contiguous share of both
    assert minibatch_split(s, 2) == [[0, 1, 5], [2, 3, 4, 6, 7]]
    assert minibatch_split(s, 1) == [list(range(8))]
    assert len(minibatch_split(s[:2], 4)) == 2  # empty mini-batches are dropped


def _run(base: Any, cfg: RLConfig, lr: float) -> tuple[dict[str, float], torch.Tensor]:
    m = copy.deepcopy(base)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    stats = update(m, opt, _samples(), cfg, temperature=0.8, top_k=0, top_p=1.0, pad_id=0)
    return stats, torch.cat([p.detach().flatten() for p in m.parameters()])


def test_minibatch_old_logprobs_align_with_the_update(tiny_model_dir: Path) -> None:
    """With weights that do not move (lr 0), the old log-probs of later mini-batches and epochs,
    taken in the pre-pass, must equal the update's own token for token: the ratio is exactly 1."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    stats, _ = _run(base, RLConfig(micro_batch=2, minibatches=2, epochs=2), lr=0.0)
    assert stats["optimizer_steps"] == 4
    assert abs(stats["ratio_min"] - 1) < 1e-5 and abs(stats["ratio_max"] - 1) < 1e-5
    assert stats["traj_samples"] == 2 * len(_samples())  # every sample once per epoch


def test_later_minibatches_see_moved_weights(tiny_model_dir: Path) -> None:
    """After the first optimizer step the ratio departs from 1 (the clip can bind); one step per
    batch keeps it at exactly 1; the two schedules end at different weights."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    one, p_one = _run(base, RLConfig(micro_batch=2), lr=1.0)
    two, p_two = _run(base, RLConfig(micro_batch=2, minibatches=2), lr=1.0)
    assert one["optimizer_steps"] == 1 and two["optimizer_steps"] == 2
    assert abs(one["ratio_min"] - 1) < 1e-6 and abs(one["ratio_max"] - 1) < 1e-6
    assert max(abs(two["ratio_min"] - 1), abs(two["ratio_max"] - 1)) > 1e-3
    assert not torch.allclose(p_one, p_two, atol=1e-6)
