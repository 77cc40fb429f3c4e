"""The optional vLLM tier for ``thor rl``: rollouts from a vLLM server on these CPUs, the policy
update in thor's trainer, the new weights reloaded into the server after each step.

Runs only when asked (``pytest -m vllm``), with .venv-vllm built (shell/vllm-venv.sh) and
SmolLM2-135M cached (vLLM's CPU attention refuses the tiny model's head size of 16). The trainer
runs in this interpreter (thor's venv); vLLM in .venv-vllm's, as the ``vllm-server`` backend
starts it.

    PYTHONPATH=$PWD/src .venv/bin/python -m pytest tests/train/rl/test_rl_vllm.py -m vllm -v

What it checks, from what the run leaves behind: 2 steps in metrics.jsonl with the importance
weights' statistics; the log-probs vLLM returned for step 2's rollouts (sampled after the first
update) equal the trainer's log-probs of the same ids under checkpoint-1 (so the weights the
engine served were the updated ones), and differ from the base model's by far more.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rl_toy import e_rate

from thor_cli.stages import RunOptions
from thor_cli.train.plumbing import rundir
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.trainer import train_rl

ROOT = Path(__file__).resolve().parents[3]
VLLM_PYTHON = Path(os.environ.get("THOR_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
SMOLLM = Path(os.environ.get("THOR_HOME", Path.home() / ".cache" / "thor")) / "models" / "smollm2-135m"
PROBLEMS = [{"id": f"p{i}", "question": f"Write a short sentence about the number {i}.", "answer": "x"}
            for i in range(4)]
ENGINE = {"enforce_eager": True, "dtype": "float32", "max_model_len": 1024, "kv_cache_memory_bytes": 256 << 20,
          "env": {"VLLM_LOGGING_LEVEL": "WARNING"}}
TOL = 2e-3  # vLLM vs hf in fp32 differed by <= 5e-5 on one forward (tests/backends/test_vllm_cpu.py)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _tier(request: pytest.FixtureRequest) -> None:
    expr = request.config.getoption("markexpr") or ""
    if "vllm" not in expr or "not vllm" in expr:
        pytest.skip("the vLLM tier runs only when asked: pytest -m vllm")
    if not VLLM_PYTHON.exists():
        pytest.skip(f"{VLLM_PYTHON} is absent: build it with shell/vllm-venv.sh (~3.5 GB)")
    if not (SMOLLM / "config.json").exists():
        pytest.skip(f"SmolLM2-135M is not cached at {SMOLLM}: thor models pull smollm2-135m")



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rl-vllm") / "run"
    run = RunOptions(model=str(SMOLLM), backend="vllm-server",
                     backend_options={"python": str(VLLM_PYTHON), **ENGINE}, temperature=1.0, max_tokens=24,
                     max_tool_calls=1, self_correct=False, workers=1, concurrency=16)
    # a large learning rate, so that checkpoint-1's log-probs are far from the base model's
    cfg = RLConfig(steps=2, problems_per_step=2, group_size=4, learning_rate=1e-4, dynamic_sampling=False,
                   filter_failed_cells=False, filter_require_boxed=False, min_survivors=1, step_level=False,
                   save_steps=1, save_trajectories=True, micro_batch=8, nll_alpha=0.0, is_level="token")
    asyncio.run(train_rl(PROBLEMS, run, cfg, out, model_path=str(SMOLLM), ckpt=rundir.prepare(out, resume=False),
                         reward_fn=e_rate))
    return out


def _trainer_logprobs(model_dir: Path, records: list[dict[str, Any]]) -> list[list[float]]:
    """Log-probs of each record's model-sampled completion ids under ``model_dir``, computed as
    the trainer does (``token_logprobs`` at the rollout's temperature)."""
    import torch
    from transformers import AutoModelForCausalLM

    from thor_cli.backends.sampling import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for r in records:
        p, c = r["prompt_ids"], r["completion_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + c])).logits[:, len(p) - 1:-1]
            lp = token_logprobs(logits, torch.tensor([c]), 1.0, -1, 1.0)[0].tolist()
        out.append([x for x, m in zip(lp, r["completion_mask"], strict=True) if m])
    return out


def test_two_steps_with_the_vllm_server_backend(run_dir: Path) -> None:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["samples"] > 0 and "skipped_update" not in r  # an update happened
        for k in ("is_ratio_mean", "is_ratio_max", "is_capped_frac", "is_weight_mean", "time_sync_s"):
            assert k in r, k
        # engine and trainer held the same weights when each step's rollouts were sampled
        assert abs(r["is_ratio_mean"] - 1) < 0.01 and r["is_ratio_max"] < 1.01, r
    assert (run_dir / "checkpoint-1").is_dir() and (run_dir / "config.json").is_file()


def test_step_two_was_sampled_with_the_weights_of_step_one(run_dir: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "trajectories" / "step-2.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("completion_ids")]
    assert records
    engine = [[lp for lp, m in zip(r["completion_logprobs"], r["completion_mask"], strict=True) if m]
              for r in records]
    after = _trainer_logprobs(run_dir / "checkpoint-1", records)
    before = _trainer_logprobs(SMOLLM, records)
    flat = [(e, a, b) for es, as_, bs in zip(engine, after, before, strict=True)
            for e, a, b in zip(es, as_, bs, strict=True)]
    gap_after = max(abs(e - a) for e, a, _ in flat)
    gap_before = max(abs(e - b) for e, _, b in flat)
    assert gap_after < TOL, gap_after
    assert gap_before > 10 * TOL, gap_before  # else the check above could not tell the weights apart
