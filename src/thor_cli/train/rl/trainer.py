"""``thor rl``'s loop: generate with the live policy, score, update, checkpoint; resumable.

Why a compact trainer of thor's own rather than TRL's GRPOTrainer (docs/ARCHITECTURE.md): TRL
fixes the rows of a batch to G per prompt in rank order, so THOR's step-level groups (any size,
made from the failing cell of some trajectories) and DAPO's dynamic sampling (drop groups, sample
more prompts) do not fit without rewriting its generation step; its truncation mask guesses from
the last token; its importance-sampling correction exists only with vLLM. Here the loss and
advantage math is ``train/rl``'s pure modules, rollouts are the rollout engine's, and this
file is the loop around them (~200 lines).

Per step: ``collect`` (rollouts of ``problems_per_step`` x ``group_size`` through the engine, on
the trainer's own weights on CPU: ``HFBackend.from_model``, no copy, or a bf16 copy of them with
``generator_dtype``; rewards; filters; dynamic
sampling; step level) -> ``update`` (one optimizer step) -> metrics line -> checkpoint every
``save_steps``. Another backend (vLLM in-process, ``vllm-server``) gets the new weights through
``Backend.load_weights`` after each step (``time_sync_s``, inside ``time_train_s``); its log-probs
are the behaviour log-probs the importance-sampling correction (``is_level``) compares against.

Checkpoint ``DIR/checkpoint-N/``: the model (safetensors), optimizer, scheduler, RNG states,
``trainer_state.json`` (step, data position, counters) and ``thor_state.json`` last (complete).
``--resume`` restores all of it: the next step draws the same problems with the same sampling
seeds (keys derive from the step), so it reproduces the uninterrupted run's next step.

Under ``accelerate launch`` (or torchrun) every rank runs this loop: it generates its share of
each step, every rank then holds the whole batch and trains its share of it, gradients summed
(``ranks.py``); rank 0 alone writes files. With ``fsdp`` the trainer's weights, gradients and
optimizer state are sharded over the ranks and every rank generates with a full copy
(``sharding.py``). With ``backend=vllm-server`` and ``base_url`` every rank is a client of one
vLLM server (its own nodes), generating its share over HTTP; rank 0 pushes each update to it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError
from thor_cli.log import log
from thor_cli.records.jsonl import write_json_atomic
from thor_cli.stages import RunOptions, RunSession
from thor_cli.train.plumbing import rundir
from thor_cli.train.plumbing.metrics import METRICS_FILE, trim
from thor_cli.train.rl.collect import collect, cycle
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.ranks import current
from thor_cli.train.rl.sharding import (
    enabled,
    full_optimizer_state,
    full_state,
    load_optimizer_state,
    optimizer_state_for,
    shard,
)
from thor_cli.train.rl.update import update

STAGE = "rl"


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(out: Path, step: int, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], gathered: tuple[dict[str, Any], dict[str, Any]] | None = None) -> Path:
    """Write ``checkpoint-STEP`` (rank 0). ``gathered``: the full model and optimizer state of a
    sharded model (sharding.py), gathered by every rank beforehand."""
    import torch

    ckpt = out / f"checkpoint-{step}"
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(ckpt), **({"state_dict": gathered[0]} if gathered else {}))
    tokenizer.save_pretrained(str(ckpt))
    torch.save(gathered[1] if gathered else optimizer.state_dict(), ckpt / "optimizer.pt")
    torch.save(scheduler.state_dict(), ckpt / "scheduler.pt")
    torch.save(_rng_state(), ckpt / "rng_state.pt")
    write_json_atomic(str(ckpt / "trainer_state.json"), {"global_step": step, **state})
    rundir.write_state(ckpt, {"step": step, "counters": state.get("counters", {})})
    return ckpt


def _reward_fn(cfg: RLConfig, grader: Any) -> Any:
    async def correct(records: list[dict[str, Any]]) -> list[float]:
        grades = await grader.agrade(records)
        for rec, g in zip(records, grades, strict=True):
            rec["grade"] = g.to_dict()
        return [1.0 if g.correct else 0.0 for g in grades]

    async def tapo(records: list[dict[str, Any]]) -> list[float]:
        from thor_cli.train.rl.rewards import TapoRewardConfig, tapo_rewards

        rcfg = TapoRewardConfig(call_penalty=cfg.tool_call_penalty)
        out = await asyncio.to_thread(tapo_rewards, records, grader=grader, cfg=rcfg)
        for rec, (_r, why) in zip(records, out, strict=True):
            rec["reward_reason"] = why
        return [r for r, _ in out]

    return tapo if cfg.reward == "tapo" else correct


async def train_rl(problems: list[dict[str, Any]], run: RunOptions, cfg: RLConfig, out: Path, *,
                   model_path: str, ckpt: Path | None, reward_fn: Any = None) -> dict[str, Any]:
    """The loop (module doc); returns a summary (steps, wall time, last metrics). ``reward_fn``:
    an async ``records -> rewards`` of your own instead of ``cfg.reward``'s."""
    import torch
    from transformers import AutoTokenizer

    from thor_cli.backends.hf import HFBackend
    from thor_cli.grading import GradeConfig, Grader
    from thor_cli.train.plumbing.run import load_model

    ranks = current()
    fsdp = enabled(cfg.fsdp, ranks.world)
    remote = ranks.world > 1 and run.backend != "hf"  # every rank a client of one generation server
    if remote and (run.backend != "vllm-server" or not run.backend_options.get("base_url")):
        raise UsageError(f"thor rl on {ranks.world} ranks generates with the hf backend, or with one vLLM server "
                         f"every rank attaches to; got backend {run.backend}"
                         f"{'' if run.backend != 'vllm-server' else ' without base_url'}",
                         "start the server (thor_cli.backends.vllm_server, or vllm serve with thor's worker "
                         "extension) and pass backend=vllm-server with backend_options base_url; or drop backend= (hf)")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    src = str(ckpt) if ckpt is not None else model_path
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = load_model(src)
    model.eval()
    ref_model = None
    if cfg.beta > 0:
        ref_model = load_model(model_path).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    generator = model  # on CPU the trainer's own weights generate, unless a copy is asked for
    if run.backend == "hf" and (fsdp or cfg.generator_dtype not in (None, "float32")):
        # a bf16 copy (faster on CPUs that compute bf16), or under FSDP the full weights every
        # rank decodes with (the sharded model cannot): refreshed after each update
        import copy

        generator = copy.deepcopy(model).to(getattr(torch, str(cfg.generator_dtype or "float32"))).eval()
        for p in generator.parameters():
            p.requires_grad_(False)
    names = [n for n, p in model.named_parameters() if p.requires_grad]  # the optimizer's, in order
    if fsdp:
        shard(model, ranks.world)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    warm = max(cfg.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    state: dict[str, Any] = {"consumed": 0, "counters": {"trajectories": 0, "samples_trained": 0}}
    start = 0
    if ckpt is not None:
        # keyed by name when an FSDP run saved it, by position otherwise: either resumes either way
        opt_state = optimizer_state_for(torch.load(ckpt / "optimizer.pt", weights_only=False), names, by_name=fsdp)
        if fsdp:
            load_optimizer_state(model, optimizer, opt_state)
        else:
            optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
        _set_rng(torch.load(ckpt / "rng_state.pt", weights_only=False))
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        start = int(saved["global_step"])
        state.update({k: v for k, v in saved.items() if k != "global_step"})
        if ranks.main:
            dropped = trim(out / METRICS_FILE, start)
            log.info("rl: resuming from %s (step %d)%s", ckpt.name, start,
                     f"; dropped {dropped} metrics lines past it" if dropped else "")
    stream = cycle(problems, cfg.seed, start=int(state["consumed"]))

    def next_problems(n: int) -> list[dict[str, Any]]:
        state["consumed"] += n
        return [next(stream) for _ in range(n)]

    # the engine options from_model takes (dtype and device are the generator's own)
    hf_opts = {k: v for k, v in run.backend_options.items() if k in ("max_batch", "max_prefill_tokens", "prefix_cache_mb", "admit_wait")}
    backend = HFBackend.from_model(generator, tokenizer, **hf_opts) if run.backend == "hf" else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    metrics_path = out / METRICS_FILE
    t_run = time.monotonic()
    last: dict[str, Any] = {}
    async with RunSession(run, backend=backend) as session:
        engine = session.engine
        with Grader(GradeConfig(code_timeout=run.timeout), sandbox=session.pool) as grader:
            reward_fn = reward_fn or _reward_fn(cfg, grader)
            try:
                for step in range(start, cfg.steps):
                    t0 = time.monotonic()
                    batch = await collect(engine, next_problems, cfg, reward_fn=reward_fn, step_index=step,
                                          concurrency=run.concurrency, ranks=ranks)
                    t1 = time.monotonic()
                    tstats = await asyncio.to_thread(
                        update, model, optimizer, batch.samples, cfg, temperature=run.temperature, top_k=run.top_k,
                        top_p=run.top_p, pad_id=pad_id, ref_model=ref_model, scheduler=scheduler, ranks=ranks)
                    t_sync = time.monotonic()
                    # another generator (a bf16 copy, vLLM, a server) gets the new weights; the live
                    # model's own backend gets a barrier that drops its prefix cache (stale keys)
                    if "skipped_update" not in tstats:
                        # under FSDP the gathered full weights (collective): on every rank for
                        # its own generator, on rank 0 alone for a server the ranks share
                        weights = full_state(model, rank0_only=remote) if fsdp else model
                        if ranks.main or not remote:
                            await session.backend.load_weights(weights)
                        if remote:  # the others wait until the server serves the new weights
                            ranks.broadcast(None)
                    t2 = time.monotonic()
                    state["counters"]["trajectories"] += len(batch.records)
                    state["counters"]["samples_trained"] += len(batch.samples)
                    tool_s = sum(float((t.get("exec") or {}).get("duration_ms") or 0.0) for r in batch.records
                                 for t in (r.get("trajectory") or {}).get("turns", []) if t.get("kind") == "output") / 1000
                    row = {"step": step + 1, **{k: _num(v) for k, v in batch.stats.items()},
                           **{k: _num(v) for k, v in tstats.items()}, "learning_rate": scheduler.get_last_lr()[0],
                           "time_rollout_s": round(t1 - t0, 3), "time_tools_s": round(tool_s, 3),
                           "time_train_s": round(t2 - t1, 3), "time_sync_s": round(t2 - t_sync, 3), "elapsed_s": round(time.monotonic() - t_run, 2)}
                    last = row
                    save_now = (cfg.save_steps and (step + 1) % cfg.save_steps == 0) or step + 1 == cfg.steps
                    # a sharded model's checkpoint is gathered by every rank, written by rank 0
                    gathered = (full_state(model, rank0_only=True), full_optimizer_state(model, optimizer)) \
                        if fsdp and save_now else None
                    if not ranks.main:
                        continue
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    log.info("rl step %d/%d: reward %.3f acc %.3f cells ok %.2f groups %d loss %.4f (gen %.0fs, "
                             "train %.0fs)", step + 1, cfg.steps, row.get("reward_mean", 0), row.get("accuracy", 0),
                             row.get("cell_success") or 0, int(row.get("groups_kept", 0)), row.get("loss", 0),
                             t1 - t0, t2 - t1)
                    if cfg.save_trajectories:
                        d = out / "trajectories"
                        d.mkdir(exist_ok=True)
                        from thor_cli.records.jsonl import dumps_line

                        (d / f"step-{step + 1}.jsonl").write_bytes(b"".join(dumps_line(r) for r in batch.records))
                    if save_now:
                        save_checkpoint(out, step + 1, model, tokenizer, optimizer, scheduler, state, gathered)
            finally:
                await grader.aclose()
    final = full_state(model, rank0_only=True) if fsdp else None  # collective
    if ranks.main:
        part = out / ".final.part"
        model.save_pretrained(str(part), **({"state_dict": final} if fsdp else {}))
        tokenizer.save_pretrained(str(part))
        rundir.publish(part, out)
    return {"steps": cfg.steps, "wall_s": round(time.monotonic() - t_run, 2), "last": last}


def _num(v: Any) -> Any:
    if isinstance(v, float):
        return None if v != v else round(v, 6)
    return v
