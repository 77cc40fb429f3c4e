"""``thor rl`` against TRL's GRPOTrainer with a plain ``rollout_func``, same tiny setup, same run.

    .venv/bin/python bench/rl_bench.py                     # 2 rounds of 4 steps each (~1 min, 2 cores)
    .venv/bin/python bench/rl_bench.py --steps 4 --group-size 8

The setup both trainers share: the tiny random Qwen2 model (``models.tiny``) after a few seconds
of SFT on the tool format (a random model never writes a ```python cell, so nothing would reach
the tool), 8 synthetic arithmetic problems (``data.arith``), ``--prompts`` prompts x G rollouts a
step, the same max completion tokens, temperature 1.0 (no top-k / top-p), at most 2 tool calls,
the python tool in thor's real sandbox, the same THOR prompt and result splice, the same reward
(1 correct, 0.5 a cell ran and a \\boxed answer, 0.25 a cell ran, else 0: graded, not all-equal,
so that thor's zero-signal-group drop leaves something to train), AdamW at the same learning
rate, clip 0.2 / 0.28, token-mean loss, no KL, the same micro-batch (``--micro-batch``).

- thor: ``train_rl`` with THOR's extras off (no dynamic sampling, no step level, no filters, no
  NLL term, no importance sampling, no dual clip). Its rollout phase is ``collect`` (the rollout
  engine: continuous batching on the live policy, cells overlapping generation, plus the reward),
  its training phase ``update`` (``metrics.jsonl``: time_rollout_s / time_train_s / time_tools_s).
  It drops groups whose rewards are all equal (no signal), so it may train fewer rows than TRL:
  the training comparison is per token trained (model-sampled completion tokens under the loss).
- TRL: GRPOTrainer (bf16=False, use_cpu=True, no gradient checkpointing) with a ``rollout_func``
  written as a TRL user would without thor: the G x prompts rows generated in lockstep with
  ``model.generate`` (batched, left-padded, stop string ```output), then each row's cell run in
  turn through a sandbox session (thor's sandbox, called synchronously from a loop thread: the
  cell cost is the same for both, what differs is the scheduling), spliced, and the unfinished rows
  generated again. Rollout phase: the time inside ``rollout_func``; training phase: the rest of
  the optimizer step (TRL's reward call, its log-prob forward/backward, the optimizer).

Each trainer runs ``--rounds`` times, alternated (thor, TRL, thor, TRL: a change in the shared
machine's load hits both); the first step of each run is a warm-up, left out of the means.
Targets (issue 13): thor's rollouts/s >= 2x TRL's; thor's training tokens/s >= 0.95x TRL's.
stdout: the table; stderr: logs.

Measured (2-core VM under a load average of ~6 from other jobs, so +-20% run to run): defaults
(4 x G=8, 2 rounds x 4 steps, ~45 s): rollouts/s 1.75x, 1.92x, and with one round 2.2x TRL's
(thor ~44/s, TRL 20-25/s); training tokens/s 1.4-1.9x. With G=16 (64 rows a step, 1 round x 3
steps) the rollout ratio fell to 1.09x and training to 0.87x: TRL's lockstep ``generate`` gains
more from the larger batch. Where thor's rollout time goes (py-spy): ~40% of the hf backend's
worker is prefill, because every resumed trajectory (after each cell) is a new request that
prefills its whole context, and the G samples of a prompt each prefill the same prompt, in small
batches as cells finish; a prefix cache or keeping a row's KV across its cell would remove most
of it. With the hf backend's prefix cache (a resumed trajectory prefills only the cell's output, a
group's identical prompts are prefilled once), on an idle 2-core machine, G=16, 2 rounds x 6
steps, alternated with ``--prefix-cache-mb 0``: rollouts/s 1.88x and 1.89x TRL's without it,
2.16x and 2.11x with it (thor 127 -> 145-147 rollouts/s); training tokens/s ~1.5x. ``update`` is forward and backward only, but it computes logits (and their backward) for
every prompt position where TRL keeps only the completion's (``logits_to_keep``).
With the hf backend's KV storage allocated ahead (written in place, free slots reused, trickling
requests admitted together; hf.py's module doc), idle 2-core machine, 2 rounds: defaults 2.81x
TRL's rollouts/s (thor 87.9/s, TRL 31.3/s), G=16 2.66x; training tokens/s 1.68x and 1.59x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MAX_TOOL_CALLS = 2
TEMPERATURE = 1.0
STOP = "```output"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the shared setup ---------------------------------------------------------------------------

def problems(n: int, seed: int) -> list[dict[str, Any]]:
    from thor_cli.data.arith import generate

    return list(generate("train", n, seed=seed))


_OK_CELL = re.compile(r"```output\n(?![^`]*(?:Error|TimeoutError|no \S+ cell))")


def reward_of(text: str, answer: str) -> float:
    """The completion's text (tool output spliced in) -> reward; graded so that a group of tiny-model
    rollouts is rarely all-equal (module doc). One function on the same text for both trainers."""
    from thor_cli.grading.extract import extract_answer

    got = extract_answer(text, fallbacks=False)
    if got is not None and got.strip() == str(answer).strip():
        return 1.0
    ok = _OK_CELL.search(text) is not None  # a cell whose output is not an error
    if ok and got is not None:
        return 0.5
    return 0.25 if ok else 0.0


def sft_tool_format(model_dir: Path, steps: int = 150) -> None:
    """A few hundred tiny SFT steps on 'compute it in a cell, box the output' so that the policy
    calls the tool; the weights are saved over ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = []
    for p in problems(64, seed=1):
        # the assistant turn alone (a short context: a full prompt makes each step ~10x dearer here)
        prompt = tok.apply_chat_template([{"role": "user", "content": p["question"][:40]}],
                                         add_generation_prompt=True, tokenize=False)
        target = (f"We compute it.\n```python\nprint({p['meta']['expression']})\n```\n```output\n{p['answer']}\n```\n"
                  f"The answer is \\boxed{{{p['answer']}}}.<|im_end|>")
        pi = tok(prompt, add_special_tokens=False)["input_ids"]
        ti = tok(target, add_special_tokens=False)["input_ids"]
        rows.append((pi + ti, [-100] * len(pi) + ti))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    t0 = time.monotonic()
    for _ in range(steps):
        idx = torch.randint(len(rows), (8,), generator=g).tolist()
        width = max(len(rows[i][0]) for i in idx)
        ids = torch.full((8, width), tok.pad_token_id)
        lab = torch.full((8, width), -100)
        att = torch.zeros((8, width), dtype=torch.long)
        for j, i in enumerate(idx):
            x, y = rows[i]
            ids[j, :len(x)], lab[j, :len(y)], att[j, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    log(f"sft on the tool format: {steps} steps, loss {loss.item():.3f}, {time.monotonic() - t0:.1f}s")
    model.save_pretrained(model_dir)


# ---- thor ---------------------------------------------------------------------------------------

def run_thor(model_dir: Path, probs: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    from thor_cli import aio
    from thor_cli.stages import RunOptions
    from thor_cli.train.rl.config import RLConfig
    from thor_cli.train.rl.trainer import train_rl

    cfg = RLConfig(steps=args.steps, problems_per_step=args.prompts, group_size=args.group_size,
                   learning_rate=args.lr, micro_batch=args.micro_batch, save_steps=0, dual_clip=None, nll_alpha=0.0,
                   is_level=None, dynamic_sampling=False, max_gen_batches=1, filter_failed_cells=False,
                   filter_require_boxed=False, min_survivors=0, step_level=False)
    run = RunOptions(model=str(model_dir), backend="hf", temperature=TEMPERATURE, max_tokens=args.max_tokens,
                     max_tool_calls=MAX_TOOL_CALLS, self_correct=False, keep_ids=True, workers=args.workers,
                     backend_options={"prefix_cache_mb": args.prefix_cache_mb})

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    async def reward(records: list[dict[str, Any]]) -> list[float]:
        return [reward_of(tokenizer.decode(r["completion_ids"], skip_special_tokens=True), r["answer"])
                for r in records]

    out.mkdir(parents=True, exist_ok=True)
    aio.run(train_rl(probs, run, cfg, out, model_path=str(model_dir), ckpt=None, reward_fn=reward))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [{"rollout_s": r["time_rollout_s"], "train_s": r["time_train_s"], "tools_s": r["time_tools_s"],
             "rollouts": int(r.get("trajectories", 0)), "rows_trained": int(r.get("traj_samples", 0)),
             "tokens_trained": float(r.get("traj_tokens", 0.0)), "tool_calls": r.get("tool_calls_mean", 0.0),
             "reward": r.get("reward_mean", 0.0)} for r in rows]


# ---- TRL with a plain rollout_func --------------------------------------------------------------

class LoopThread:
    """An event loop in a thread, so that the synchronous rollout_func can call the sandbox."""

    def __init__(self) -> None:
        from thor_cli import aio

        self.loop = aio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def make_rollout_func(tool: Any, loop: LoopThread, args: argparse.Namespace, timing: dict[str, list[float]]) -> Any:
    """Lockstep multi-turn rollouts with ``model.generate``, the way a TRL user writes them."""
    import torch

    from thor_cli.records.schema import ExecResult
    from thor_cli.rollout.protocols import THOR

    def rollout_func(prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        t_start = time.perf_counter()
        tools_s = 0.0
        tok = trainer.processing_class
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        pad, eos = tok.pad_token_id, tok.eos_token_id
        n = len(prompts)
        prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        comp: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        mask: list[list[int]] = [[] for _ in range(n)]
        sessions: list[Any] = [None] * n
        calls = [0] * n
        active = list(range(n))
        while active:
            ctx = [prompt_ids[i] + comp[i] for i in active]
            budget = [args.max_tokens - len(comp[i]) for i in active]
            width = max(len(c) for c in ctx)
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in ctx])
            att = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in ctx])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=max(budget), do_sample=True,
                                     temperature=TEMPERATURE, top_k=0, top_p=1.0, stop_strings=[STOP], tokenizer=tok,
                                     pad_token_id=pad, eos_token_id=eos, return_dict_in_generate=True,
                                     output_logits=True)
            new = out.sequences[:, width:]
            logp = torch.log_softmax(torch.stack(out.logits, 1).float() / TEMPERATURE, -1)
            logp = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            still = []
            for j, i in enumerate(active):
                row = new[j].tolist()
                k = len(row)
                while k > 0 and row[k - 1] == pad:  # a finished row is padded to the batch's length
                    k -= 1
                if eos in row[:k]:
                    k = row.index(eos) + 1
                k = min(k, budget[j])
                comp[i] += row[:k]
                lps[i] += logp[j, :k].tolist()
                mask[i] += [1] * k
                text = tok.decode(row[:k])
                if STOP not in text or calls[i] >= MAX_TOOL_CALLS or len(comp[i]) >= args.max_tokens:
                    continue  # answered, or out of budget
                # the cell as thor's protocol reads it, so that both sides run the same cells
                call = THOR.parse_call(text, STOP)
                t0 = time.perf_counter()
                if call.error is not None:
                    res = ExecResult(status="error", error=call.error)
                else:
                    if sessions[i] is None:
                        sessions[i] = loop.call(tool.session())
                    res = loop.call(sessions[i].run(call.arg))
                tools_s += time.perf_counter() - t0
                calls[i] += 1
                splice = tok(THOR.format_result(res, 2048), add_special_tokens=False)["input_ids"]
                if len(comp[i]) + len(splice) > args.max_tokens:
                    continue
                comp[i] += splice
                lps[i] += [0.0] * len(splice)
                mask[i] += [0] * len(splice)
                still.append(i)
            active = still
        for s in sessions:
            if s is not None:
                loop.call(s.close())
        if was_training:
            model.train()
        timing["rollout_s"].append(time.perf_counter() - t_start)
        timing["tools_s"].append(tools_s)
        timing["rollouts"].append(n)
        timing["tokens"].append(float(sum(sum(m) for m in mask)))
        timing["tool_calls"].append(sum(calls) / n)
        return {"prompt_ids": prompt_ids, "completion_ids": comp, "logprobs": lps, "env_mask": mask}

    return rollout_func


def run_trl(model_dir: Path, probs: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from thor_cli.rollout.protocols import THOR
    from thor_cli.sandbox import SandboxConfig, SandboxPool
    from thor_cli.tools.python import PythonTool

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    loop = LoopThread()  # the sandbox first: its warm interpreters fork before the model is loaded
    pool = loop.call(SandboxPool(SandboxConfig(timeout=10.0, memory_mb=1024, workers=args.workers)).start())
    tool = PythonTool(pool=pool)
    try:
        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        rows = [{"prompt": tok.apply_chat_template([{"role": "user", "content": THOR.user_message(p["question"], True)}],
                                                   add_generation_prompt=True, tokenize=False),
                 "answer": p["answer"]} for p in probs]
        timing: dict[str, list[float]] = {k: [] for k in ("rollout_s", "tools_s", "rollouts", "tokens", "tool_calls")}
        steps: list[float] = []
        rewards: list[float] = []

        def reward(prompts: list[str], completions: list[str], answer: list[str], **kw: Any) -> list[float]:
            out = [reward_of(text, a) for text, a in zip(completions, answer, strict=True)]
            rewards.append(sum(out) / len(out))
            return out

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a: Any, **k: Any) -> None:
                self.t0 = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                steps.append(time.perf_counter() - self.t0)

        rows_per_step = args.prompts * args.group_size
        cfg = GRPOConfig(output_dir=str(out), per_device_train_batch_size=args.micro_batch,
                         gradient_accumulation_steps=rows_per_step // args.micro_batch, num_generations=args.group_size,
                         max_completion_length=args.max_tokens, temperature=TEMPERATURE, learning_rate=args.lr,
                         lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                         optim="adamw_torch", beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="dapo",
                         max_steps=args.steps, logging_steps=1, save_strategy="no", report_to="none", bf16=False,
                         use_cpu=True, gradient_checkpointing=False, seed=0, disable_tqdm=True)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=cfg, train_dataset=Dataset.from_list(rows),
                              processing_class=tok, rollout_func=make_rollout_func(tool, loop, args, timing),
                              callbacks=[StepTimer()])
        trainer.train()
    finally:
        loop.call(pool.close())
        loop.stop()
    if len(steps) != len(timing["rollout_s"]):
        raise RuntimeError(f"TRL: {len(steps)} steps timed but {len(timing['rollout_s'])} rollout calls")
    return [{"rollout_s": r, "train_s": s - r, "tools_s": ts, "rollouts": int(n), "rows_trained": int(n),
             "tokens_trained": tk, "tool_calls": tc, "reward": rw}
            for s, r, ts, n, tk, tc, rw in zip(steps, timing["rollout_s"], timing["tools_s"], timing["rollouts"],
                                               timing["tokens"], timing["tool_calls"], rewards, strict=True)]


# ---- the table ----------------------------------------------------------------------------------

def summary(rounds: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Means over every round's steps but its first (a warm-up); rates as totals over totals."""
    use = [r for rows in rounds for r in (rows[1:] if len(rows) >= 2 else rows)]
    m = {k: statistics.fmean(float(r[k]) for r in use) for k in use[0]}
    m["rollouts_per_s"] = sum(r["rollouts"] for r in use) / sum(r["rollout_s"] for r in use)
    m["train_tok_per_s"] = sum(r["tokens_trained"] for r in use) / max(sum(r["train_s"] for r in use), 1e-9)
    m["steps_used"] = len(use)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps each (the first is a warm-up)")
    ap.add_argument("--group-size", type=int, default=8, help="G: rollouts per prompt")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--max-tokens", type=int, default=128, help="max completion tokens (tool output included)")
    ap.add_argument("--micro-batch", type=int, default=8, help="rows per forward/backward (both trainers)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--workers", type=int, default=2, help="sandbox workers (both)")
    ap.add_argument("--prefix-cache-mb", type=float, default=1024,
                    help="thor's hf prefix cache (0: off, to measure what it brings)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternated (steps pooled)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine 2 threads spin ~8x slower)")
    ap.add_argument("--only", choices=("thor", "trl"), help="run one side (no ratios)")
    args = ap.parse_args()
    if (args.prompts * args.group_size) % args.micro_batch:
        ap.error("--micro-batch must divide prompts x group size")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="thor-rl-bench-") as d:
        _bench(args, Path(d))


def _bench(args: argparse.Namespace, tmp: Path) -> None:
    from thor_cli.models.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp / "tiny")
    sft_tool_format(model_dir)
    probs = problems(8, seed=0)
    log(f"rl bench: {args.steps} steps of {args.prompts} prompts x G={args.group_size}, {args.max_tokens} tokens, "
        f"T={TEMPERATURE}, <= {MAX_TOOL_CALLS} tool calls, micro-batch {args.micro_batch}")
    per_step: dict[str, list[list[dict[str, Any]]]] = {}
    sides = [(n, f) for n, f in (("thor", run_thor), ("TRL", run_trl)) if not args.only or args.only == n.lower()]
    for rnd in range(args.rounds):  # alternated, so that a change in the machine's load hits both sides
        for name, fn in sides:
            t0 = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # TRL prints its log lines on stdout
                rows = fn(model_dir, probs, args, tmp / f"{name}-{rnd}")
            per_step.setdefault(name, []).append(rows)
            for i, r in enumerate(rows):
                log(f"  {name} round {rnd + 1} step {i + 1}: " + ", ".join(
                    f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
            log(f"{name} round {rnd + 1}: {time.monotonic() - t0:.1f}s in all")
    res = {name: summary(rounds) for name, rounds in per_step.items()}
    cols = [("rollouts/s", "rollouts_per_s", "{:.2f}"), ("rollout phase s/step", "rollout_s", "{:.2f}"),
            ("training phase s/step", "train_s", "{:.2f}"), ("tool time s/step (*)", "tools_s", "{:.2f}"),
            ("rows trained/step", "rows_trained", "{:.1f}"), ("tokens trained/step", "tokens_trained", "{:.0f}"),
            ("training tokens/s", "train_tok_per_s", "{:.0f}"), ("tool calls/rollout", "tool_calls", "{:.2f}"),
            ("reward mean", "reward", "{:.3f}")]
    names = list(res)
    print(f"rl bench: tiny model, {args.prompts} prompts x G={args.group_size}, {args.max_tokens} tokens, "
          f"{args.rounds} rounds x steps 2..{args.steps} of each (step 1 = warm-up), means per step")
    print(f"{'metric':24} | " + " | ".join(f"{n:>8}" for n in names))
    for label, key, fmt in cols:
        print(f"{label:24} | " + " | ".join(f"{fmt.format(res[n][key]):>8}" for n in names))
    if len(names) == 2:
        t, b = res["thor"], res["TRL"]
        r_roll = t["rollouts_per_s"] / b["rollouts_per_s"]
        r_step = b["train_s"] / t["train_s"] if t["train_s"] > 0 else float("inf")
        r_tok = t["train_tok_per_s"] / b["train_tok_per_s"] if b["train_tok_per_s"] > 0 else float("nan")
        print("(*) thor: the cells' own sandbox time, overlapped with generation; TRL: wall time in its "
              "sequential cell calls (session start and the loop-thread hop included)")
        print()
        print("ratio (thor / TRL)                    | value | goal    | verdict")
        print(f"rollout throughput (rollouts/s)       | {r_roll:5.2f} | >= 2x   | {'MET' if r_roll >= 2 else 'NOT MET'}")
        print(f"training speed (tokens trained/s)     | {r_tok:5.2f} | >= 0.95x| {'MET' if r_tok >= 0.95 else 'NOT MET'}")
        print(f"training phase per step (TRL s/thor s) | {r_step:5.2f} | (info: batches differ when thor drops "
              f"all-equal groups)")


if __name__ == "__main__":
    main()
