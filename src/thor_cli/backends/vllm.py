"""The ``vllm`` backend: vLLM's async engine in this process (continuous batching on GPUs).

Owns only the translation between thor's interface (base.py) and vLLM's documented API:
``AsyncEngineArgs`` -> ``AsyncLLMEngine.from_engine_args`` (an alias of ``AsyncLLM`` in vLLM
v1), ``TokensPrompt(prompt_token_ids=...)``, ``SamplingParams(..., seed, logprobs=0,
include_stop_str_in_output=True)`` and ``engine.generate(prompt, params, request_id)``, an async
iterator whose last item holds the finished output. vLLM does the batching, prefix caching and
tensor/data parallelism; the scheduler already keeps EOS and the stop-completing token in
``token_ids``. Log-probs are the processed ones (after temperature, top-k/top-p), as the
contract asks: ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10.2).

vllm is an optional extra (``pip install 'thor-cli[vllm]'``, needs a CUDA GPU) and is imported
only when this class is built. Where it was run: see tests/backends/test_vllm.py (skipped
without vllm and a GPU; CI never runs it).
"""

from __future__ import annotations

import uuid
from typing import Any

from thor_cli.backends.base import Completion, FinishReason, SamplingParams
from thor_cli.errors import BackendError


class VLLMBackend:
    """vLLM's AsyncLLM behind the async ``Backend`` interface."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, dtype: str = "auto", seed: int = 0,
                 logprobs_mode: str | None = "processed_logprobs", **engine_kwargs: Any) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as e:
            raise BackendError(f"vllm backend: vllm is not installed ({e})",
                               "pip install 'thor-cli[vllm]' on a machine with a CUDA GPU, or use --backend hf") from e
        from thor_cli.models.resolve import resolve_model

        path = resolve_model(model)
        kwargs: dict[str, Any] = dict(
            model=path, tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching,
            dtype=dtype, seed=seed, **engine_kwargs)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if logprobs_mode is not None:
            kwargs["logprobs_mode"] = logprobs_mode
        try:
            self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kwargs))
        except TypeError as e:  # an engine argument this vLLM version does not know
            raise BackendError(f"vllm backend: bad engine arguments ({e})",
                               "drop the option or upgrade vllm (logprobs_mode needs vllm >= 0.10.2)") from e
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_context = int(self.engine.model_config.max_model_len)
        self.eos_ids = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        sp = VSamplingParams(
            n=1, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1, stop=list(params.stop) or None, seed=params.seed,
            logprobs=0 if params.logprobs else None, include_stop_str_in_output=True,
            skip_special_tokens=False, spaces_between_special_tokens=False)
        final = None
        try:
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)), sp,
                                                  request_id=uuid.uuid4().hex):
                final = out
        except Exception as e:  # noqa: BLE001 -- the engine's errors become the project's
            raise BackendError(f"vllm backend: generation failed ({type(e).__name__}: {e})",
                               "check GPU memory (gpu_memory_utilization) and max_model_len") from e
        if final is None or not final.outputs:
            raise BackendError("vllm backend: the engine returned no output", "check the vLLM logs")
        seq = final.outputs[0]
        ids = [int(t) for t in seq.token_ids]
        logprobs = None
        if params.logprobs and seq.logprobs is not None:
            logprobs = [float(step[t].logprob) for step, t in zip(seq.logprobs, ids, strict=True)]
        finish: FinishReason
        stop = None
        if seq.finish_reason == "length":
            finish = "length"
        elif isinstance(seq.stop_reason, str):
            finish, stop = "stop", seq.stop_reason
        elif seq.finish_reason == "stop":
            finish = "eos"
        else:
            raise BackendError(f"vllm backend: request ended with {seq.finish_reason!r}", "check the vLLM logs")
        return Completion(ids=ids, logprobs=logprobs, finish_reason=finish, stop=stop,
                          meta={"cached_tokens": getattr(final, "num_cached_tokens", None)})

    async def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
