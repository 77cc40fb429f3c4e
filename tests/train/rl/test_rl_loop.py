"""thor rl's loop on the tiny model: the reward rises, --resume reproduces the next steps, the CLI;
collect's filters, dynamic sampling and step-level groups with a scripted policy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rl_toy import e_rate

from thor_cli.stages import RunOptions
from thor_cli.train.plumbing import rundir
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.trainer import train_rl

THOR = str(Path(sys.executable).parent / "thor")
PROBLEMS = [{"id": f"p{i}", "question": f"Say something {i}.", "answer": "x"} for i in range(8)]



def _toy(model: Path, out: Path, steps: int, *, resume: bool = False) -> list[dict[str, Any]]:
    run = RunOptions(model=str(model), temperature=1.0, max_tokens=24, self_correct=False, workers=1, concurrency=16)
    cfg = RLConfig(steps=steps, problems_per_step=2, group_size=8, learning_rate=3e-2, dynamic_sampling=False,
                   filter_failed_cells=False, filter_require_boxed=False, min_survivors=1, step_level=False,
                   save_steps=1, micro_batch=16, nll_alpha=0.0)
    ckpt = rundir.prepare(out, resume=resume)
    asyncio.run(train_rl(PROBLEMS, run, cfg, out, model_path=str(model), ckpt=ckpt, reward_fn=e_rate))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_reward_rises_over_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = _toy(tiny_model_dir, tmp_path / "run", 12)
    rewards = [r["reward_mean"] for r in rows]
    assert len(rows) == 12
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.05, rewards
    assert (tmp_path / "run" / "config.json").is_file()  # the final model


@pytest.mark.slow
def test_resume_after_a_stop_reproduces_the_next_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    whole = _toy(tiny_model_dir, tmp_path / "whole", 4)
    _toy(tiny_model_dir, tmp_path / "cut", 2)  # stopped after step 2 (its checkpoint is complete)
    resumed = _toy(tiny_model_dir, tmp_path / "cut", 4, resume=True)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(whole[2:], resumed[2:], strict=True):
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], abs=1e-9)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


@pytest.mark.slow
def test_thor_rl_cli_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                            for i in range(4)))
    out = tmp_path / "rl"
    r = subprocess.run([THOR, "rl", "--model", str(tiny_model_dir), "--output", str(out), str(data), "steps=1",
                        "problems_per_step=2", "group_size=2", "max_tokens=24", "workers=1", "max_gen_batches=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["trajectories"] == 4 and "time_rollout_s" in row and "time_train_s" in row
    assert (out / "config.json").is_file() and (out / "checkpoint-1" / "thor_state.json").is_file()
    assert json.loads(Path(f"{out}.manifest.json").read_text())["config"]["rl"]["group_size"] == 2
    bad = subprocess.run([THOR, "rl", "--model", str(tiny_model_dir), "--output", str(tmp_path / "x"), str(data),
                          "group_sise=2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "group_size" in bad.stderr  # a typo names the nearest key


@pytest.mark.slow
def test_a_bf16_generator_copy_follows_the_trainer(tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """generator_dtype=bfloat16: a bf16 copy generates and gets the new weights after each update, so
    the generator's log-probs stay close to the trainer's (importance ratios near 1) while the policy
    moves fast; with the refresh switched off the same run drifts apart (the test can fail)."""
    from thor_cli.backends.hf import HFBackend

    def run(out: Path) -> list[dict[str, Any]]:
        rcfg = RunOptions(model=str(tiny_model_dir), temperature=1.0, max_tokens=24, self_correct=False,
                          workers=1, concurrency=16)
        cfg = RLConfig(steps=4, problems_per_step=2, group_size=8, learning_rate=3e-2, dynamic_sampling=False,
                       filter_failed_cells=False, filter_require_boxed=False, min_survivors=1, step_level=False,
                       save_steps=0, micro_batch=16, nll_alpha=0.0, generator_dtype="bfloat16",
                       autocast_dtype="bfloat16", is_cap=1e9)
        ckpt = rundir.prepare(out, resume=False)
        asyncio.run(train_rl(PROBLEMS, rcfg, cfg, out, model_path=str(tiny_model_dir), ckpt=ckpt, reward_fn=e_rate))
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    def drift(rows: list[dict[str, Any]]) -> float:
        return max(r["is_ratio_max"] for r in rows[1:])

    synced = run(tmp_path / "synced")
    assert synced[0]["is_ratio_max"] != 1.0  # bf16 against fp32: the generator really is another model
    monkeypatch.setattr(HFBackend, "load_weights", lambda self, source, strict=True: asyncio.sleep(0))
    stale = run(tmp_path / "stale")
    assert drift(synced) < 2.0 < drift(stale), (drift(synced), drift(stale))
