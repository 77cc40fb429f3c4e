"""Rollout engine benchmark: overhead, overlap of generation with tool execution, hf throughput.

    .venv/bin/python bench/rollout_bench.py            # all rows (about a minute on 2 cores)
    .venv/bin/python bench/rollout_bench.py --quick    # smaller sizes

Rows (ratios are taken in the same run):
1. Engine overhead: an instant scripted backend and instant tool (and, beside it, the real
   sandbox with trivial cells): tool turns per second. Target >= 1,000.
2. Overlap: a backend that serves one call at a time in G ms (a saturated accelerator) and cells
   of E ms on W workers; N trajectories of T tool turns. The engine's wall time against the bound
   max(total generation, total execution / W), and the lockstep way (everyone generates, then
   everyone executes, as in ToRA's and THOR's code) measured beside it. Target: engine <= 1.1x bound.
3. hf backend: tokens/s of the engine (8 trajectories at once, no tools) against plain
   ``model.generate`` on the same 8 prompts (batch 8), SmolLM2-135M when cached (``thor models pull
   smollm2-135m``), else the tiny random model. Target >= 0.9x.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.schema import ExecResult
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool, build_tools

ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, value: str, ref: str, verdict: str) -> None:
    ROWS.append((name, value, ref, verdict))
    print(f"  {name}: {value} | {ref} | {verdict}", file=sys.stderr, flush=True)


def turn_script(turns: int) -> Any:
    def script(text: str, ids: list[int], i: int) -> str:
        n = text.count("```output")
        return f"Step {n}.\n```python\nprint({n})\n```\n```output" if n < turns else "Done: \\boxed{1}."
    return script


def counting_script(turns: int) -> Any:
    """Like turn_script, but counts each trajectory's turns without decoding its prompt (so that
    the row measures the engine, not the fake backend)."""
    state: dict[tuple[int, ...], int] = {}

    def script(text: str, ids: list[int], i: int) -> str:
        key = tuple(ids[:16])  # the chat header and the question: distinct per trajectory
        n = state.get(key, 0)
        state[key] = n + 1
        return f"S.\n```python\nprint({n})\n```\n```output" if n < turns else "\\boxed{1}"
    return script


def problems(n: int) -> list[tuple[dict[str, Any], str, int]]:
    return [({"id": str(i), "question": f"q{i}"}, str(i), 0) for i in range(n)]


async def _engine_run(backend: Any, tools: dict[str, Any], n: int, concurrency: int, cfg: RolloutConfig) -> tuple[float, int]:
    async with RolloutEngine(backend, cfg, tools=tools) as eng:
        t0 = time.perf_counter()
        calls = 0
        async for _, f in eng.run(problems(n), concurrency=concurrency):
            assert f["error"] is None, f["error"]
            calls += f["trajectory"]["n_tool_calls"]
        return time.perf_counter() - t0, calls


def bench_overhead(tok: Any, n: int, turns: int) -> None:
    cfg = RolloutConfig(max_tool_calls=turns + 1, max_tokens=100_000)
    be = ScriptedBackend(tokenizer=tok, script=counting_script(turns), decode_prompts=False)
    tool = FunctionTool("python", lambda c: ExecResult(status="ok", stdout="1\n"), stateful=True)
    wall, calls = asyncio.run(_engine_run(be, {"python": tool}, n, 64, cfg))
    assert calls == n * turns, calls
    rate = calls / wall
    row("1. engine overhead, instant backend + instant tool", f"{rate:,.0f} tool turns/s ({calls} turns)",
        "target >= 1,000/s", "PASS" if rate >= 1000 else "FAIL")
    be = ScriptedBackend(tokenizer=tok, script=turn_script(turns))
    try:
        tools = build_tools(("python",), timeout=5.0)
        wall, calls = asyncio.run(_engine_run(be, tools, max(n // 4, 8), 64, cfg))
        row("1b. same, real sandbox cells print(n)", f"{calls / wall:,.0f} tool turns/s ({calls} turns)",
            "(sandbox-bound; info)", "-")
    except Exception as e:  # noqa: BLE001 -- the sandbox row is informative only
        row("1b. same, real sandbox", f"skipped ({e})", "", "-")


async def _lockstep(backend: Any, tool: FunctionTool, n: int, turns: int, g: float, tok: Any) -> float:
    """Everyone generates (one batch of requests), then everyone executes; T rounds + the answer."""
    from thor_cli.backends.base import SamplingParams

    ctx = [[1, 2, 3] for _ in range(n)]
    sessions = [await tool.session() for _ in range(n)]
    t0 = time.perf_counter()
    params = SamplingParams(max_tokens=64, stop=("```output",))
    for r in range(turns + 1):
        comps = await asyncio.gather(*(backend.generate(c, params) for c in ctx))
        if r == turns:
            break
        await asyncio.gather(*(s.run("print(1)") for s in sessions))
        for c, comp in zip(ctx, comps, strict=True):
            c.extend(comp.ids)
    return time.perf_counter() - t0


def bench_overlap(tok: Any, n: int, turns: int, g_ms: float, e_ms: float, workers: int) -> None:
    g, e = g_ms / 1000, e_ms / 1000
    cfg = RolloutConfig(max_tool_calls=turns + 1, max_tokens=100_000)
    total_gen = n * (turns + 1) * g
    total_exec = n * turns * e / workers
    bound = max(total_gen, total_exec)
    be = ScriptedBackend(tokenizer=tok, script=turn_script(turns), delay=g, serial=True)
    tool = FunctionTool("python", lambda c: ExecResult(status="ok", stdout="1\n"), stateful=True, delay=e,
                        workers=workers)
    wall, calls = asyncio.run(_engine_run(be, {"python": tool}, n, n, cfg))
    assert calls == n * turns
    # the bound from the time actually slept (asyncio.sleep overshoots a little on a busy machine)
    bound = max(be.busy_s, tool.busy_s / workers)

    async def lock() -> float:
        be2 = ScriptedBackend(tokenizer=tok, script=turn_script(turns), delay=g, serial=True)
        t2 = FunctionTool("python", lambda c: ExecResult(status="ok", stdout="1\n"), delay=e, workers=workers)
        await t2.start()
        return await _lockstep(be2, t2, n, turns, g, tok)

    lockstep = asyncio.run(lock())
    ratio = wall / bound
    row(f"2. overlap G={g_ms:g}ms E={e_ms:g}ms W={workers} N={n} T={turns}",
        f"engine {wall:.2f}s = {ratio:.2f}x bound {bound:.2f}s (nominal {max(total_gen, total_exec):.2f}s); "
        f"lockstep {lockstep:.2f}s = {lockstep / bound:.2f}x",
        "target engine <= 1.1x bound", "PASS" if ratio <= 1.1 else "FAIL")


def bench_hf(model_dir: Path, label: str, batch: int, new_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thor_cli.backends.hf import HFBackend

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    questions = [f"Compute {i} * {i + 3} and explain the steps." for i in range(batch)]
    cfg = RolloutConfig(tools=(), temperature=1.0, max_tokens=new_tokens)
    backend = HFBackend(str(model_dir))
    prompts = [backend.tokenizer.apply_chat_template([{"role": "user", "content": q + "\nPlease reason step by step, "
                                                       "and put your final answer within \\boxed{}."}],
                                                     add_generation_prompt=True, tokenize=True) for q in questions]
    prompts = [list(p["input_ids"]) if hasattr(p, "keys") else list(p) for p in prompts]

    async def engine() -> tuple[float, int]:
        items = [({"id": str(i), "prompt_ids": p}, str(i), 0) for i, p in enumerate(prompts)]
        async with RolloutEngine(backend, cfg) as eng:
            await eng.rollout(items[0][0], "warm", 0)
            t0 = time.perf_counter()
            n = 0
            async for _, f in eng.run(items, concurrency=batch):
                n += len(f["completion_ids"])
            return time.perf_counter() - t0, n

    wall, n_engine = asyncio.run(engine())
    asyncio.run(backend.close())
    eng_rate = n_engine / wall

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    eos = tok.eos_token_id
    with torch.inference_mode():
        model.generate(input_ids=ids[:1], attention_mask=mask[:1], max_new_tokens=4, do_sample=True, pad_token_id=pad)
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad)
        plain_wall = time.perf_counter() - t0
    gen = out[:, width:].tolist()
    n_plain = 0
    for seq in gen:  # tokens up to and including EOS, like the engine counts
        n_plain += next((i + 1 for i, t in enumerate(seq) if t == eos), len(seq))
    plain_rate = n_plain / plain_wall
    ratio = eng_rate / plain_rate
    row(f"3. hf {label}, batch {batch}, {new_tokens} new tokens",
        f"engine {eng_rate:,.0f} tok/s ({n_engine} tok) vs generate {plain_rate:,.0f} tok/s ({n_plain} tok) "
        f"= {ratio:.2f}x", "target >= 0.9x", "PASS" if ratio >= 0.9 else "FAIL")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from thor_cli.models.registry import cached_path
    from thor_cli.models.tiny import build_tiny_model

    tiny = build_tiny_model(Path(tempfile.mkdtemp(prefix="thor-bench-")) / "tiny")
    tok = AutoTokenizer.from_pretrained(tiny)
    q = args.quick
    print("rollout bench (stderr: progress; stdout: the table)", file=sys.stderr)
    bench_overhead(tok, n=100 if q else 400, turns=10)
    bench_overlap(tok, n=16 if q else 32, turns=4, g_ms=5, e_ms=20, workers=4)
    bench_overlap(tok, n=16 if q else 32, turns=4, g_ms=2, e_ms=40, workers=4)
    if not args.skip_hf:
        smol = cached_path("smollm2-135m")
        if smol is None:
            row("3. hf SmolLM2-135M", "skipped: not cached (thor models pull smollm2-135m)", "", "-")
        else:
            bench_hf(smol, "SmolLM2-135M", 8, 32 if q else 64)
        bench_hf(tiny, "tiny random model", 8, 64 if q else 128)
    width = max(len(r[0]) for r in ROWS)
    print(f"{'row'.ljust(width)} | result | target | verdict")
    for name, value, ref, verdict in ROWS:
        print(f"{name.ljust(width)} | {value} | {ref} | {verdict}")


if __name__ == "__main__":
    main()
