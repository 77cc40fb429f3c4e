"""The ``hf`` backend: transformers on CPU or one GPU, continuously batched.

Owns: loading a checkpoint (a thor cached name, a local folder or an HF id), and a decoding loop
of its own instead of ``model.generate``, because the contract needs things generate cannot give
in one batch: per-request sampling parameters, a per-request ``torch.Generator`` (a row's samples
do not depend on which other requests share its batch), stop strings checked on the decoded
completion, and rows that leave and join the batch while it runs.

How it works. ``generate`` puts a request in an inbox (all requests made in the same event-loop
tick go in together) and awaits a future. One worker thread owns the model and a running batch
with a KV cache (left-padded, with a 2-D attention mask and explicit position ids). Each step it
either admits waiting requests (a prefill of the new prompts) or decodes one token for every
running row. A row that finishes is answered at once, so a runaway sample costs only its own row.
The event loop never blocks: the worker hands results back with ``call_soon_threadsafe``, so the
rollout engine runs sandbox cells while the model generates.

Storage. transformers' ``DynamicCache`` concatenates every layer's keys and values on each token
(a copy of the whole cache per step), and joining or cutting rows copies it again: on a CPU,
with rows leaving for every tool call, those copies took as long as the forwards. So the running
batch lives in storage allocated ahead (``_slab_layer_class``: rows x heads x columns x head_dim, grown
geometrically): a step writes its column in place; a finished row's slot stays (decoded along,
ignored) until a new request takes it, written right-aligned at the current column; free slots
and leading columns no row needs are dropped in one copy when they are more than a quarter of
the batch or when the columns run out. And a prefill stops every running row for a forward whose
cost hardly depends on how few rows it holds, so while the batch runs, requests that trickle in
(rows back from their tool calls) wait up to ``admit_wait`` decoding steps (default 4) to be
admitted together (at once when 8 wait or the batch is empty). Measured on the main job's
tool-integrated eval (SmolLM2-135M after SFT, 128 problems, 64 rows, bf16, 2 cores): 70.7 s ->
44.4 s.

Sampling (sampling.py, shared with the trainer's ``token_logprobs``): logits / temperature, then
top-k and top-p (per row), then one uniform draw per row from the row's generator, inverted
through the CDF. ``logprobs`` are log-probabilities of the sampled ids under that processed
distribution. ``temperature == 0`` is greedy; its logprobs are those of the unscaled
distribution (the processed one would be all zeros).

Weights: ``load_weights`` copies a state dict, a module's or a checkpoint folder's weights into
the running model in place, between two decoding steps (``paused()`` is the handshake with the
worker); ``HFBackend.from_model`` wraps a live model, such as a trainer's, without a copy.

Prefix cache. A tool-integrated trajectory comes back after each cell with its whole context as
a new prompt: everything it had plus the cell's output. So a row that ends on a stop string (a
tool call) parks its KV cache, and a later prompt that starts with a parked sequence prefills only
what is new (``prefix_cache_mb``, default 1024; 0 turns it off). A parked entry is taken by the
first prompt that extends it whole; one that shares only part of it (a retry after backing off,
a branch) uses that part and leaves the entry for others; the least recently used go first when
the budget is full. Identical prompts admitted together (a group's G samples) are prefilled once.
Parked entries are dropped whenever the weights may change (``paused()``, ``load_weights``).
Reused keys were computed in an earlier forward, so a continuation's numbers can differ from a
cold prefill's in the last bits, as they do between batch compositions.

Not covered: sliding-window caches (such models run with a full cache, which is correct but uses
more memory), speculative decoding, more than one device.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from thor_cli.backends.base import Completion, FinishReason, SamplingParams, raw_decoder
from thor_cli.backends.sampling import sample
from thor_cli.backends.weights import checked_state
from thor_cli.errors import BackendError, ThorError
from thor_cli.log import log


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Completion]
    max_new: int
    seed: int
    generator: Any = None  # torch.Generator, made in the worker
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_window: int = 0
    t_submit: float = field(default_factory=time.monotonic)
    arrived: int = 0  # the backend's decoding step when it reached the inbox

    def cancelled(self) -> bool:
        return self.future.done()


@dataclass(eq=False)
class _Parked:
    """The KV cache of a finished row: ``tokens`` are the ids it holds, one (keys, values) pair
    per layer, each (1, heads, len(tokens), head_dim)."""

    tokens: list[int]
    layers: list[tuple[Any, Any]]
    nbytes: int


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists (slice comparisons run in C)."""
    n = min(len(a), len(b))
    if n == 0 or a[0] != b[0]:
        return 0
    if a[:n] == b[:n]:
        return n
    lo, hi = 1, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


_ADMIT_TOGETHER = 8  # see HFBackend._take_new
_COLUMN_STEP = 64  # columns of headroom a running batch's storage gets when it grows


@functools.cache
def _slab_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """One layer's keys and values in storage allocated ahead, (row capacity, heads, column
        capacity, head_dim); ``keys``/``values`` are views of the rows and columns in use.
        ``update`` writes the step's new columns in place where transformers' ``DynamicLayer``
        concatenates (a copy of the whole cache per token); the backend reserves the room."""

        def __init__(self, kbuf: Any, vbuf: Any) -> None:
            super().__init__()
            self.kbuf, self.vbuf = kbuf, vbuf
            self.device = kbuf.device
            self.is_initialized = True
            self.resize(0, 0)

        @classmethod
        def empty_like(cls, like: Any, rows: int, columns: int) -> Any:
            import torch

            shape = (rows, like.shape[1], columns, like.shape[3])
            # zeros, not empty: a free slot attends to every column, so no column may hold NaN
            return cls(torch.zeros(shape, dtype=like.dtype, device=like.device),
                       torch.zeros(shape, dtype=like.dtype, device=like.device))

        def resize(self, rows: int, width: int) -> None:
            self.rows, self.width = rows, width
            self.keys = self.kbuf[:rows, :, :width]
            self.values = self.vbuf[:rows, :, :width]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            end = self.width + key_states.shape[-2]
            if key_states.shape[0] != self.rows or end > self.kbuf.shape[2]:
                raise RuntimeError(f"slab cache: {tuple(key_states.shape)} into {self.rows} rows, "
                                   f"{self.width}/{self.kbuf.shape[2]} columns")
            self.kbuf[:self.rows, :, self.width:end] = key_states
            self.vbuf[:self.rows, :, self.width:end] = value_states
            self.resize(self.rows, end)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.width

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.width + query_length, 0

    return SlabLayer


def _slab_empty_like(like: Any, rows: int, columns: int) -> Any:
    """A ``SlabLayer`` (see ``_slab_layer_class``) of zeros, shaped and typed like ``like``."""
    layer_class: Any = _slab_layer_class()
    return layer_class.empty_like(like, rows, columns)


def _resolve(model: str) -> str:
    from thor_cli.models.resolve import resolve_model

    return resolve_model(model)


class HFBackend:
    """A transformers causal LM behind the async ``Backend`` interface (see base.py)."""

    name = "hf"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", max_batch: int = 32,
                 max_prefill_tokens: int = 16384, prefix_cache_mb: float = 1024, admit_wait: int = 4,
                 attn_implementation: str | None = None, trust_remote_code: bool = False, **unknown: Any) -> None:
        if unknown:
            raise BackendError(f"hf backend: unknown options {sorted(unknown)}",
                               "known: device, dtype, max_batch, max_prefill_tokens, prefix_cache_mb, admit_wait, "
                               "attn_implementation")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = _resolve(model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype == "auto":
            # bf16/fp16 matmuls are slow on most CPUs; on a GPU take the checkpoint's own dtype.
            torch_dtype: Any = torch.float32 if self.device.type == "cpu" else "auto"
        else:
            torch_dtype = getattr(torch, dtype, None)
            if not isinstance(torch_dtype, torch.dtype):
                raise BackendError(f"hf backend: unknown dtype {dtype!r}", "use auto, float32, bfloat16 or float16")
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self._text_of = raw_decoder(self.tokenizer)  # per sampled token (stop strings): built once
            loader: Any = AutoModelForCausalLM
            self.model: Any = loader.from_pretrained(path, **kwargs).to(self.device).eval()
        except ThorError:
            raise
        except (OSError, ValueError) as e:
            raise BackendError(f"hf backend: cannot load model {model!r} ({e})",
                               "pass a checkpoint folder, a cached name (thor models list) or an HF id") from e
        self._setup(max_batch, max_prefill_tokens, prefix_cache_mb, admit_wait)
        log.debug("hf backend: %s on %s (%s), max_context %d", path, self.device, self.model.dtype, self.max_context)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, max_batch: int = 32, max_prefill_tokens: int = 16384,
                   prefix_cache_mb: float = 1024, admit_wait: int = 4) -> HFBackend:
        """Wrap a live transformers model (no copy), e.g. the trainer's own, for RL on one device.

        The backend generates with ``model`` as it is at each decoding step, on the model's
        device and dtype, and does not change its mode: put it in ``eval()`` for rollouts
        (dropout) and leave ``use_cache`` alone. Whoever changes its weights (an optimizer step)
        must do so inside ``with backend.paused():`` (or call ``await backend.load_weights(model)``
        afterwards as a barrier) so that no forward runs while the weights change.
        """
        self = cls.__new__(cls)
        self.model = model
        self.tokenizer = tokenizer
        self._text_of = raw_decoder(tokenizer)
        self.device = next(model.parameters()).device
        self._setup(max_batch, max_prefill_tokens, prefix_cache_mb, admit_wait)
        return self

    def _setup(self, max_batch: int, max_prefill_tokens: int, prefix_cache_mb: float = 1024,
               admit_wait: int = 4) -> None:
        """Everything but loading: limits, special ids and the worker's state."""
        import torch

        config = self.model.config.get_text_config(decoder=True)
        self.max_context = int(getattr(config, "max_position_embeddings", 0) or 0) or int(
            min(getattr(self.tokenizer, "model_max_length", 32768), 1 << 20))
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.eos_ids = self._eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0))
        self.max_batch = max(1, int(max_batch))
        self.threads = torch.get_num_threads()  # the worker thread uses what the caller configured
        self.max_prefill_tokens = max(1, int(max_prefill_tokens))
        self.admit_wait = max(0, int(admit_wait))
        try:
            self.prefix_cache_bytes = max(0, int(float(prefix_cache_mb) * (1 << 20)))
        except (TypeError, ValueError) as e:
            raise BackendError(f"hf backend: prefix_cache_mb must be a number, got {prefix_cache_mb!r}",
                               "pass megabytes, e.g. prefix_cache_mb=512, or 0 to turn the prefix cache off") from e
        # Parked KV caches (see the module docstring), touched by the worker or under a pause.
        self._parked: OrderedDict[int, _Parked] = OrderedDict()
        self._parked_bytes = 0
        self._parked_seq = 0
        # How often the running batch's storage was copied (see _regrow/_compact): a test sees the paths taken.
        self.storage_stats = {"regrown": 0, "widened": 0, "trimmed": 0, "compacted": 0, "slots_reused": 0}
        self.prefix_stats = {"prompt_tokens": 0, "reused_tokens": 0, "prefilled_tokens": 0, "parked": 0, "evicted": 0}
        # transformers >= 5.2x names the KV cache argument `cache` and warns on `past_key_values`.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        # One condition guards the inbox, closing, and the pause handshake with load_weights.
        self._cond = threading.Condition()
        self._inbox: list[_Request] = []
        self._outbox: list[_Request] = []  # filled within one event-loop tick, flushed once
        self._flush_scheduled = False
        self._closing = False
        self._pauses = 0  # holders of paused(): the worker starts no step while > 0
        self._stepping = False  # the worker is inside a step (a forward may be running)
        self._thread: threading.Thread | None = None
        self._sysrand = random.SystemRandom()
        # Running batch, touched only by the worker thread.
        self._rows: list[_Request | None] = []  # None: a free slot (see _merge)
        self._steps = 0  # decoding steps so far (admission waits count them)
        self._cache: Any = None  # a transformers Cache of SlabLayers (_slab_layer_class)
        self._mask: Any = None  # (B, T) long, 1 = real token
        self._pos: Any = None  # (B,) position of the token fed next
        self._next: Any = None  # (B,) the last sampled token, not yet in the cache

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    # ---- async side -------------------------------------------------------------------------

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        if self._closing:
            raise BackendError("hf backend is closed", "create a new backend")
        if not prompt_ids:
            raise BackendError("hf backend: empty prompt", "pass at least one prompt token (e.g. a chat template)")
        if len(prompt_ids) >= self.max_context:
            raise BackendError(f"hf backend: prompt of {len(prompt_ids)} tokens leaves no room in the model's "
                               f"context of {self.max_context}", "shorten the prompt or lower the budgets")
        if params.max_tokens < 1:
            raise BackendError(f"hf backend: max_tokens must be >= 1, got {params.max_tokens}", "raise max_tokens")
        bad = [t for t in prompt_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise BackendError(f"hf backend: prompt token id {bad[0]} outside the vocabulary (size {self.vocab_size})",
                               "tokenize with this model's tokenizer")
        loop = asyncio.get_running_loop()
        seed = params.seed if params.seed is not None else self._sysrand.getrandbits(63)
        req = _Request(list(prompt_ids), params, loop, loop.create_future(),
                       max_new=min(params.max_tokens, self.max_context - len(prompt_ids)), seed=seed)
        if params.stop:
            # A stop string of L characters spans at most 4L tokens (one byte each), plus slack.
            req.stop_window = 4 * max(len(s) for s in params.stop) + 4
        self._outbox.append(req)
        if not self._flush_scheduled:
            # Hand over everything submitted in this tick at once, so that concurrent calls share
            # one prefill instead of trickling into the batch one by one.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await req.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._outbox = self._outbox, []
        for r in batch:
            r.arrived = self._steps
        with self._cond:
            self._inbox.extend(batch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, name="thor-hf-backend", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 30.0)

    # ---- weights ----------------------------------------------------------------------------

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the decoding loop between two steps: while inside, no forward runs (any thread).

        Blocks until the step under way, if any, ends. Requests keep their place in the batch and
        go on when the last holder leaves. Used by ``load_weights``; a trainer that shares the
        model (``from_model``) wraps its optimizer step in it. Nothing is generated while it is
        held, so awaiting ``generate`` inside it waits forever.
        """
        with self._cond:
            self._pauses += 1
            while self._stepping:
                self._cond.wait()
            self._drop_parked()  # the weights may change: parked keys would be stale
        try:
            yield
        finally:
            with self._cond:
                self._pauses -= 1
                self._cond.notify_all()

    async def load_weights(self, source: Any, *, strict: bool = True) -> None:
        """Put new weights into the running model, between two decoding steps.

        ``source``: a state dict (name -> tensor, as ``model.state_dict()`` names them), a
        ``torch.nn.Module`` (its state dict), or a checkpoint folder (loaded with transformers,
        so a second copy of the model lives in CPU memory while it is copied). Passing the
        backend's own model copies nothing: it only waits for the step under way (a barrier).
        Tensors are copied in place (dtype and device converted), so the model object, and any
        reference a trainer holds to it, stays the same. ``strict``: every parameter and buffer
        of the model must be given (tied weights count once), and no unknown name.

        Requests in flight stay in the batch and continue with the new weights (their KV cache
        keeps what the old weights computed), as in vLLM; await them first for on-policy samples.
        """
        await asyncio.to_thread(self._load_weights_blocking, source, strict)

    def _load_weights_blocking(self, source: Any, strict: bool) -> None:
        import torch

        if source is self.model:
            with self.paused():
                return
        pairs, origin = checked_state(self.model, source, strict)
        with self.paused(), torch.no_grad():
            for target, value in pairs:
                target.copy_(value)
        log.debug("hf backend: loaded %d tensors from %s", len(pairs), origin)

    # ---- worker thread ----------------------------------------------------------------------

    def _worker(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closing and (self._pauses or not (self._inbox or self._live)):
                        self._cond.wait()
                    if self._closing:
                        pending, self._inbox = self._inbox, []
                        break
                    new = self._take_new()
                    self._stepping = True
                try:
                    self._step(new)
                except Exception as e:  # noqa: BLE001 -- every waiter must hear about it
                    log.debug("hf backend step failed", exc_info=True)
                    err = BackendError(f"hf backend: generation failed ({type(e).__name__}: {e})",
                                       "check the model and the prompt; rerun with THOR_DEBUG=1 for the traceback")
                    err.__cause__ = e
                    for r in [*self._rows, *new]:
                        if r is not None:
                            self._deliver(r, err)
                    self._reset(drop_storage=True)
                finally:
                    with self._cond:
                        self._stepping = False
                        self._cond.notify_all()
        err = BackendError("hf backend closed while requests were pending", "await generate before close()")
        for r in [*self._rows, *pending]:
            if r is not None:
                self._deliver(r, err)
        self._reset(drop_storage=True)

    def _take_new(self) -> list[_Request]:
        self._inbox = [r for r in self._inbox if not r.cancelled()]
        free = self.max_batch - self._live
        if self._live and self._inbox and len(self._inbox) < min(free, _ADMIT_TOGETHER):
            # A prefill stops every running row for one forward, whose cost hardly depends on how
            # few rows it holds: while the batch runs, requests that trickle in (rows back from
            # their tool calls) wait a few decoding steps to be admitted together.
            if self._steps - self._inbox[0].arrived < self.admit_wait:  # the inbox is in arrival order
                return []
        new: list[_Request] = []
        longest = 0
        for r in self._inbox[:free]:
            longest2 = max(longest, len(r.prompt))
            if new and longest2 * (len(new) + 1) > self.max_prefill_tokens:
                break
            new.append(r)
            longest = longest2
        del self._inbox[: len(new)]
        return new

    def _drop_parked(self) -> None:
        self._parked.clear()
        self._parked_bytes = 0

    def _park(self, i: int, r: _Request) -> None:
        """Keep row ``i``'s KV cache for a prompt that continues it (before the row is cut out)."""
        tokens = r.prompt + r.ids[:-1]  # the last sampled id was never fed
        cols = self._mask[i].bool()
        if int(cols.sum()) != len(tokens):  # never expected; a wrong entry would be silent
            log.debug("hf backend: row %d holds %d cached tokens, expected %d: not parked", i, int(cols.sum()),
                      len(tokens))
            return
        layers = [(layer.keys[i:i + 1, :, cols], layer.values[i:i + 1, :, cols]) for layer in self._cache.layers]
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if nbytes > self.prefix_cache_bytes:
            return
        while self._parked and self._parked_bytes + nbytes > self.prefix_cache_bytes:
            _, old = self._parked.popitem(last=False)
            self._parked_bytes -= old.nbytes
            self.prefix_stats["evicted"] += 1
        self._parked_seq += 1
        self._parked[self._parked_seq] = _Parked(tokens, layers, nbytes)
        self._parked_bytes += nbytes
        self.prefix_stats["parked"] += 1

    def _lookup(self, prompt: list[int]) -> tuple[_Parked | None, int]:
        """The parked entry sharing the longest prefix with ``prompt`` and that length (at most
        ``len(prompt) - 1``: the last prompt token is always fed, for its logits). An entry that
        ``prompt`` extends whole is taken out of the store."""
        best: tuple[int, int] = (0, 0)
        for key, entry in self._parked.items():
            n = _common_prefix(entry.tokens, prompt)
            if n > best[1]:
                best = (key, n)
        key, n = best
        n = min(n, len(prompt) - 1)
        if n < 8:  # too little to pay for the padding it brings
            return None, 0
        entry = self._parked[key]
        if n == len(entry.tokens):
            del self._parked[key]
            self._parked_bytes -= entry.nbytes
        else:
            self._parked.move_to_end(key)
        return entry, n

    def _reset(self, *, drop_storage: bool = False) -> None:
        """Empty the batch; the storage stays for the next one (``_merge`` reuses it) unless dropped."""
        self._rows, self._mask, self._pos, self._next = [], None, None, None
        if drop_storage:
            self._cache = None

    def _deliver(self, req: _Request, result: Completion | BaseException) -> None:
        def settle() -> None:
            if req.future.done():
                return
            if isinstance(result, BaseException):
                req.future.set_exception(result)
            else:
                req.future.set_result(result)

        try:
            req.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the caller's event loop is gone; nobody is waiting
            pass

    def _step(self, new: list[_Request]) -> None:
        import torch

        for i, r in enumerate(self._rows):
            if r is not None and r.cancelled():
                self._free(i)
        if new:
            for r in new:
                r.generator = torch.Generator().manual_seed(r.seed)
            logits, cache, mask, pos = self._prefill(new)
            rows = self._merge(new, cache, mask, pos)
        elif self._live:
            logits = self._decode()
            rows = [i for i, r in enumerate(self._rows) if r is not None]
            if len(rows) < len(self._rows):
                logits = logits.index_select(0, torch.tensor(rows, device=logits.device))
        else:
            return
        batch = [r for r in (self._rows[i] for i in rows) if r is not None]  # every one is live
        tokens, logprobs = sample(logits, [r.params.temperature for r in batch], [r.params.top_k for r in batch],
                                  [r.params.top_p for r in batch], [r.generator for r in batch])
        self._next[torch.tensor(rows, device=self.device)] = torch.tensor(tokens, device=self.device)
        for i, r, tok, lp in zip(rows, batch, tokens, logprobs, strict=True):
            r.ids.append(tok)
            r.logprobs.append(lp)
            done = self._finished(r, tok)
            if done is None:
                continue
            reason, stop = done
            if reason == "stop" and self.prefix_cache_bytes:
                self._park(i, r)
            self._free(i)
            self._deliver(r, Completion(
                ids=list(r.ids), logprobs=list(r.logprobs) if r.params.logprobs else None,
                finish_reason=reason, stop=stop,
                meta={"seed": r.seed, "seconds": round(time.monotonic() - r.t_submit, 4)}))
        self._compact()

    def _finished(self, r: _Request, tok: int) -> tuple[FinishReason, str | None] | None:
        if tok in self.eos_ids:
            return "eos", None
        if r.stop_window:
            tail = self._text_of(r.ids[-r.stop_window:])
            hits = [(tail.find(s) + len(s), s) for s in r.params.stop if s and s in tail]
            if hits:
                return "stop", min(hits)[1]
        if len(r.ids) >= r.max_new:
            return "length", None
        return None

    def _forward(self, input_ids: Any, mask: Any, pos: Any, cache: Any, last_only: bool) -> Any:
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if last_only else {}
        kwargs[self._cache_arg] = cache
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)
        return out.logits[:, -1, :]

    def _prefill(self, new: list[_Request]) -> tuple[Any, Any, Any, Any]:
        """Prefill the admitted prompts: identical ones once, each after its parked prefix if any.

        Layout of row i (P = longest reused prefix, S = longest new suffix): the cache holds its
        reused keys right-aligned in P columns, the suffix is fed right-aligned in S columns, and
        the 2-D mask marks both parts; positions count on from the reused length.
        """
        import torch
        from transformers import DynamicCache

        uniq: list[_Request] = []
        first: dict[tuple[int, ...], int] = {}
        src: list[int] = []
        for r in new:
            j = first.setdefault(tuple(r.prompt), len(uniq))
            if j == len(uniq):
                uniq.append(r)
            src.append(j)
        pasts = [self._lookup(r.prompt) if self.prefix_cache_bytes and self._parked else (None, 0) for r in uniq]
        width_p = max(n for _, n in pasts)
        suffixes = [r.prompt[n:] for r, (_, n) in zip(uniq, pasts, strict=True)]
        width_s = max(len(x) for x in suffixes)
        m = len(uniq)
        ids = torch.full((m, width_s), self.pad_id, dtype=torch.long)
        mask = torch.zeros((m, width_p + width_s), dtype=torch.long)
        positions = torch.zeros((m, width_s), dtype=torch.long)
        for i, (suffix, (_, n)) in enumerate(zip(suffixes, pasts, strict=True)):
            ids[i, width_s - len(suffix):] = torch.tensor(suffix)
            mask[i, width_p - n:width_p] = 1
            mask[i, width_p + width_s - len(suffix):] = 1
            positions[i, width_s - len(suffix):] = torch.arange(n, n + len(suffix))
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        cache: Any = DynamicCache()
        if width_p:
            ref = next(e for e, _ in pasts if e is not None).layers
            layers = []
            for li, (k0, v0) in enumerate(ref):
                keys = k0.new_zeros((m, k0.shape[1], width_p, k0.shape[3]))
                values = v0.new_zeros((m, v0.shape[1], width_p, v0.shape[3]))
                for i, (entry, n) in enumerate(pasts):
                    if entry is not None:
                        keys[i, :, width_p - n:] = entry.layers[li][0][0, :, :n]
                        values[i, :, width_p - n:] = entry.layers[li][1][0, :, :n]
                layers.append((keys, values))
            cache = DynamicCache(ddp_cache_data=layers)
        logits = self._forward(ids, mask, positions, cache, last_only=True)
        stats = self.prefix_stats
        stats["prompt_tokens"] += sum(len(r.prompt) for r in new)
        stats["reused_tokens"] += sum(n for _, n in pasts)
        stats["prefilled_tokens"] += sum(len(x) for x in suffixes)
        if m < len(new):  # duplicates: copy the rows of their first occurrence
            idx = torch.tensor(src, dtype=torch.long, device=self.device)
            logits, mask = logits.index_select(0, idx), mask.index_select(0, idx)
            for layer in cache.layers:
                layer.keys = layer.keys.index_select(0, idx)
                layer.values = layer.values.index_select(0, idx)
        pos = torch.tensor([len(r.prompt) for r in new], dtype=torch.long, device=self.device)
        return logits, cache, mask, pos

    def _decode(self) -> Any:
        import torch

        self._steps += 1
        self._reserve_columns(1)
        mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], 1))], dim=1)
        logits = self._forward(self._next[:, None], mask, self._pos[:, None], self._cache, last_only=False)
        self._mask = mask
        self._pos = self._pos + 1
        return logits

    # ---- the running batch's storage (see _slab_layer_class) ----------------------------------------
    # Rows are slots: a finished row's slot stays in the batch, free (decoded along, its output
    # ignored, its mask all ones so attention stays finite) until a new request takes it or
    # ``_compact`` drops the free slots once they are more than a quarter of the batch.

    @property
    def _live(self) -> int:
        """Rows that are not free slots."""
        return sum(r is not None for r in self._rows)

    def _layers(self) -> list[Any]:
        return self._cache.layers if self._cache is not None else []

    def _free(self, i: int) -> None:
        self._rows[i] = None
        self._mask[i] = 1

    def _merge(self, new: list[_Request], cache: Any, mask: Any, pos: Any) -> list[int]:
        """Put freshly prefilled rows into free slots (or new ones at the end), right-aligned at
        the batch's current column; return their row indices."""
        import torch
        from transformers import Cache

        m, t_new = mask.shape
        if self._live == 0:  # an empty batch: start over, reusing the storage if it is big enough
            old = self._layers()
            if not (old and old[0].kbuf.shape[0] >= m and old[0].kbuf.shape[2] > t_new):
                old = [_slab_empty_like(layer.keys, m, t_new + _COLUMN_STEP) for layer in cache.layers]
            for slab, layer in zip(old, cache.layers, strict=True):
                slab.kbuf[:m, :, :t_new] = layer.keys
                slab.vbuf[:m, :, :t_new] = layer.values
                slab.resize(m, t_new)
            self._cache = Cache(layers=old)
            self._rows = list(new)
            self._mask, self._pos = mask, pos
            self._next = torch.zeros(m, dtype=torch.long, device=self.device)
            return list(range(m))
        width = self._mask.shape[1]
        if t_new > width:  # the new rows reach further back than the batch: widen it on the left
            self.storage_stats["widened"] += 1
            self._regrow(rows=len(self._rows), left=t_new - width, columns=1)
            width = t_new
        free = [i for i, r in enumerate(self._rows) if r is None][:m]
        first = len(self._rows)
        extra = m - len(free)
        if extra:
            self._regrow(rows=first + extra)
            self._rows.extend([None] * extra)
            self._mask = torch.cat([self._mask, self._mask.new_ones((extra, width))])
            self._pos = torch.cat([self._pos, self._pos.new_zeros(extra)])
            self._next = torch.cat([self._next, self._next.new_zeros(extra)])
        slots = [*free, *range(first, first + extra)]
        self.storage_stats["slots_reused"] += len(free)
        idx = torch.tensor(slots, dtype=torch.long, device=self.device)
        for slab, layer in zip(self._layers(), cache.layers, strict=True):
            slab.kbuf[idx, :, width - t_new:width] = layer.keys
            slab.vbuf[idx, :, width - t_new:width] = layer.values
        rows_mask = mask.new_zeros((m, width))
        rows_mask[:, width - t_new:] = mask
        self._mask[idx] = rows_mask
        self._pos[idx] = pos
        self._next[idx] = 0
        for i, r in zip(slots, new, strict=True):
            self._rows[i] = r
        return slots

    def _compact(self) -> None:
        """Drop free slots once they are more than a quarter of the batch, and the leading
        columns no live row attends to; one copy of the live rows."""
        import torch

        n = len(self._rows)
        if self._live == 0:
            self._reset()
            return
        if 4 * (n - self._live) <= n:
            return
        keep = [i for i, r in enumerate(self._rows) if r is not None]
        self.storage_stats["compacted"] += 1
        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, idx)
        start = int(mask.any(dim=0).long().argmax())  # first column some live row still attends to
        width = mask.shape[1] - start
        for slab in self._layers():
            slab.kbuf[:len(keep), :, :width] = slab.kbuf[idx, :, start:start + width]
            slab.vbuf[:len(keep), :, :width] = slab.vbuf[idx, :, start:start + width]
            slab.resize(len(keep), width)
        self._mask = mask[:, start:]
        self._pos = self._pos.index_select(0, idx)
        self._next = self._next.index_select(0, idx)
        self._rows = [self._rows[i] for i in keep]

    def _reserve_columns(self, n: int) -> None:
        """Room for ``n`` more columns: trim the leading columns no live row attends to, or grow."""
        slab = self._layers()[0]
        width = self._mask.shape[1]
        if width + n <= slab.kbuf.shape[2]:
            return
        live = [i for i, r in enumerate(self._rows) if r is not None]
        used = self._mask[live].any(dim=0) if live else self._mask.new_ones(width).bool()
        start = int(used.long().argmax())
        self.storage_stats["trimmed"] += start > 0
        self._regrow(rows=len(self._rows), left=-start, columns=n)

    def _regrow(self, rows: int, left: int = 0, columns: int = 0) -> None:
        """Reallocate the storage for ``rows`` rows, the columns shifted by ``left`` (< 0 drops
        leading columns) and room for ``columns`` more; one copy. Sizes grow geometrically."""
        import torch

        width = self._mask.shape[1]
        first = self._layers()[0].kbuf
        if left == 0 and rows <= first.shape[0] and width + columns <= first.shape[2]:
            for slab in self._layers():  # it fits: only the views change
                slab.resize(rows, width)
            return
        self.storage_stats["regrown"] += 1
        if left < 0:
            self._mask = self._mask[:, -left:]
        elif left > 0:
            self._mask = torch.cat([self._mask.new_zeros((self._mask.shape[0], left)), self._mask], dim=1)
            free = [i for i, r in enumerate(self._rows) if r is None]
            self._mask[free] = 1  # free slots keep an all-ones mask (finite attention)
        new_width = width + left
        keep = min(len(self._rows), rows)
        cap_rows = first.shape[0] if rows <= first.shape[0] else min(max(rows, 2 * first.shape[0]),
                                                                     max(rows, self.max_batch))
        need = new_width + columns
        cap_cols = first.shape[2] if need <= first.shape[2] and left == 0 else max(need + _COLUMN_STEP, int(1.5 * need))
        src_from, dst_from = (-left, 0) if left < 0 else (0, left)
        n_cols = width - src_from
        for li, slab in enumerate(self._layers()):
            grown = _slab_empty_like(slab.kbuf, cap_rows, cap_cols)
            grown.kbuf[:keep, :, dst_from:dst_from + n_cols] = slab.kbuf[:keep, :, src_from:width]
            grown.vbuf[:keep, :, dst_from:dst_from + n_cols] = slab.vbuf[:keep, :, src_from:width]
            grown.resize(rows, new_width)
            self._cache.layers[li] = grown
