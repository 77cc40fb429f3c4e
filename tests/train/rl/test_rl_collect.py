"""collect: THOR's filters, dynamic sampling and step-level groups, with a scripted policy and tool
(rl_toy's two-problem harness, which test_rl_ranks also runs on two ranks)."""

from __future__ import annotations

from typing import Any

from rl_toy import collect_two_problems, two_problems_policy

from thor_cli.backends.scripted import ScriptedBackend


def test_filters_dynamic_sampling_and_step_groups(tok: Any) -> None:
    batch = collect_two_problems(ScriptedBackend(tokenizer=tok, script=two_problems_policy))
    s = batch.stats
    # problem a's trajectories all failed a cell: filtered; b's are all right: equal rewards, dropped
    assert s["filtered_failed_cell"] >= 4 and s["groups_kept"] == 0 and s["gen_batches"] == 2
    traj = [x for x in batch.samples if x.level == "traj"]
    step = [x for x in batch.samples if x.level == "step"]
    assert not traj and step  # only the step level has signal here
    assert {x.reward for x in step} == {0.0, 1.0}  # the new cell ran, or failed again
    for x in step:  # here the back-off removed the whole step before the failing cell: all of it is resampled
        assert len(x.loss_mask) == len(x.completion_ids) and any(x.loss_mask)
        assert "fail()" not in tok.decode(x.completion_ids[:4])
    assert 0.0 < s["step_pass_rate"] < 1.0
