"""The ``openai`` backend: any OpenAI-compatible ``/v1/completions`` endpoint.

Owns: one HTTP request per ``generate`` (``vllm serve``, SGLang, TGI, hosted APIs), a concurrency
limit, bounded retries with exponential backoff, and turning the answer back into token ids.

Token-in, token-out. The prompt is sent as a list of token ids (the completions API accepts
that), so the server sees exactly the ids the rollout engine built. With ``server_extras=True``
(the default) the request also carries vLLM's documented extras: ``return_token_ids`` (the
sampled ids come back in ``choices[0].token_ids``), ``return_tokens_as_token_ids`` (logprob
tokens spelled ``token_id:N``, for servers older than ``return_token_ids``),
``include_stop_str_in_output``, ``skip_special_tokens=False`` and ``top_k``. When a server
answers with text only, the text is tokenized with the model's tokenizer and the completion is
marked ``meta["retokenized"] = True``: its ids may then differ from what the server sampled
(token-exactness depends on the server), and ``logprobs`` is None. A server that rejects the
extras (hosted APIs answer 400 to unknown fields) needs ``server_extras=False``.

Finish reasons: ``length`` as the server says; ``stop`` when the server names the stop string
(vLLM's ``stop_reason``) or a requested stop string is in the text; otherwise ``eos``. A
text-only server that cuts the stop string from its text (as OpenAI's API does) is reported as
``eos`` with ``meta["finish_uncertain"] = True``.

Configuration: ``base_url`` (else ``THOR_OPENAI_BASE_URL``, ``OPENAI_BASE_URL``, then
``http://127.0.0.1:8000/v1``), ``api_key`` (else ``THOR_OPENAI_API_KEY``, ``OPENAI_API_KEY``),
``served_model`` (the name the server knows; default ``model``), ``tokenizer`` (where to load the
tokenizer from; default ``model``), ``concurrency``, ``max_retries``, ``timeout``.

Weights: ``load_weights`` is a no-op that logs once. The model lives in the remote server, and
whoever runs it syncs its weights (e.g. vLLM's ``/collective_rpc`` with ``reload_weights`` in its
dev mode, or TRL's vLLM server).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import urlparse

from thor_cli.backends.base import Completion, FinishReason, SamplingParams
from thor_cli.errors import BackendError
from thor_cli.log import log

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUS = {408, 409, 429}  # plus every 5xx


def _base_url(url: str | None) -> str:
    url = url or os.environ.get("THOR_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    url = url.rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BackendError(f"openai backend: base URL {url!r} is not an http(s) URL",
                           "pass e.g. --base-url http://127.0.0.1:8000/v1 or set THOR_OPENAI_BASE_URL")
    if parsed.path in ("", "/"):
        url += "/v1"  # `vllm serve` and most servers mount the API under /v1
    return url


class OpenAIBackend:
    """Completions over HTTP behind the async ``Backend`` interface (see base.py)."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 64, max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: float = 600.0, served_model: str | None = None, tokenizer: str | None = None,
                 server_extras: bool = True, max_context: int | None = None,
                 extra_body: dict[str, Any] | None = None, **unknown: Any) -> None:
        if unknown:
            raise BackendError(f"openai backend: unknown options {sorted(unknown)}",
                               "known: base_url, api_key, concurrency, max_retries, backoff, timeout, "
                               "served_model, tokenizer, server_extras, max_context, extra_body")
        self.url = _base_url(base_url) + "/completions"
        self.api_key = api_key or os.environ.get("THOR_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.served_model = served_model or model
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff, self.max_backoff, self.timeout = float(backoff), float(max_backoff), float(timeout)
        self.server_extras = server_extras
        self.extra_body = dict(extra_body or {})
        self.tokenizer, self.max_context = self._load_tokenizer(tokenizer or model, max_context)
        eos = self.tokenizer.eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()
        self._per_loop: dict[asyncio.AbstractEventLoop, tuple[Any, asyncio.Semaphore]] = {}
        self._warned_weights = False

    @staticmethod
    def _load_tokenizer(spec: str, max_context: int | None) -> tuple[Any, int]:
        from transformers import AutoConfig, AutoTokenizer

        from thor_cli.models.resolve import resolve_model

        path = resolve_model(spec)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise BackendError(f"openai backend: cannot load a tokenizer from {spec!r} ({e})",
                               "pass tokenizer=<folder or HF id> matching the served model") from e
        if max_context is None:
            try:
                config = AutoConfig.from_pretrained(path).get_text_config(decoder=True)
                max_context = int(getattr(config, "max_position_embeddings", 0) or 0) or None
            except (OSError, ValueError):
                max_context = None
        if max_context is None:
            max_context = int(min(getattr(tokenizer, "model_max_length", 32768), 1 << 20))
        return tokenizer, int(max_context)

    def _session(self) -> tuple[Any, asyncio.Semaphore]:
        import aiohttp

        loop = asyncio.get_running_loop()
        for old in [lp for lp in self._per_loop if lp.is_closed()]:
            del self._per_loop[old]
        if loop not in self._per_loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout),
                                            connector=aiohttp.TCPConnector(limit=self.concurrency))
            self._per_loop[loop] = (session, asyncio.Semaphore(self.concurrency))
        return self._per_loop[loop]

    def _body(self, prompt_ids: list[int], params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.served_model, "prompt": list(prompt_ids),
                                "max_tokens": params.max_tokens, "temperature": params.temperature,
                                "top_p": params.top_p, "logprobs": 0 if params.logprobs or self.server_extras else None}
        if body["logprobs"] is None:
            del body["logprobs"]
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.server_extras:
            body.update(return_token_ids=True, return_tokens_as_token_ids=True, include_stop_str_in_output=True,
                        skip_special_tokens=False, spaces_between_special_tokens=False)
            if params.top_k > 0:
                body["top_k"] = params.top_k
        elif params.top_k > 0:
            log.warning("openai backend: top_k=%d not sent (server_extras=False)", params.top_k)
        body.update(self.extra_body)
        return body

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        import aiohttp

        session, limit = self._session()
        body = self._body(prompt_ids, params)
        last, delay = "", 0.0
        async with limit:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(delay)
                delay = min(self.max_backoff, self.backoff * 2 ** attempt)
                try:
                    async with session.post(self.url, json=body) as resp:
                        text = await resp.text()
                        if resp.status == 200:
                            return self._parse(text, params, attempt + 1)
                        last = f"HTTP {resp.status}: {text[:300]}"
                        if resp.status not in RETRY_STATUS and resp.status < 500:
                            raise BackendError(f"openai backend: {self.url} refused the request ({last})",
                                               self._hint_for(resp.status, text))
                        retry_after = resp.headers.get("Retry-After")
                        if retry_after:
                            try:
                                delay = min(self.max_backoff, max(0.0, float(retry_after)))
                            except ValueError:
                                pass
                except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                    last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                log.debug("openai backend: %s attempt %d failed (%s)", self.url, attempt + 1, last)
        raise BackendError(f"openai backend: {self.url} failed after {self.max_retries + 1} tries (last: {last})",
                           "check that the server is up (e.g. `vllm serve MODEL`) and reachable, or set "
                           "--base-url / THOR_OPENAI_BASE_URL; lower the concurrency if it is overloaded")

    def _hint_for(self, status: int, text: str) -> str:
        if status in (401, 403):
            return "pass api_key or set OPENAI_API_KEY"
        if status == 404 and "model" in text.lower():
            return f"the server does not serve {self.served_model!r}: pass served_model=<name from {self.url[:-12]}/models>"
        if status == 404:
            return "the URL has no /completions endpoint: check --base-url (it usually ends in /v1)"
        if status in (400, 422) and self.server_extras:
            return "if the server rejects vLLM's extra fields, pass server_extras=False (ids are then re-tokenized)"
        return "check the request options against the server's documentation"

    def _parse(self, text: str, params: SamplingParams, attempts: int) -> Completion:
        import orjson

        try:
            data = orjson.loads(text)
            choice = data["choices"][0]
            out_text = choice.get("text") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise BackendError(f"openai backend: {self.url} sent an answer that is not a completion ({e}): "
                               f"{text[:200]}", "point --base-url at an OpenAI-compatible /v1 endpoint") from e
        meta: dict[str, Any] = {"attempts": attempts, "retokenized": False}
        lp_block = choice.get("logprobs") or {}
        ids: list[int] | None = None
        if isinstance(choice.get("token_ids"), list):
            ids = [int(t) for t in choice["token_ids"]]
        else:
            tokens = lp_block.get("tokens") if isinstance(lp_block, dict) else None
            if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
                ids = [int(t.split(":", 1)[1]) for t in tokens]
        logprobs: list[float] | None = None
        raw_lps = lp_block.get("token_logprobs") if isinstance(lp_block, dict) else None
        if ids is not None and isinstance(raw_lps, list) and len(raw_lps) == len(ids) \
                and all(isinstance(x, int | float) for x in raw_lps):
            logprobs = [float(x) for x in raw_lps]

        reason = choice.get("finish_reason")
        stop_reason = choice.get("stop_reason")
        stop: str | None = None
        finish: FinishReason
        if reason == "length":
            finish = "length"
        elif isinstance(stop_reason, str):
            finish, stop = "stop", stop_reason
        else:
            hits = [(out_text.find(s) + len(s), s) for s in params.stop if s and s in out_text]
            if hits:
                finish, stop = "stop", min(hits)[1]
            else:
                finish = "eos"
                if ids is None and params.stop:
                    meta["finish_uncertain"] = True
        if ids is None:
            ids = self.tokenizer.encode(out_text, add_special_tokens=False)
            if finish == "eos" and self.eos_ids and (not ids or ids[-1] not in self.eos_ids):
                ids.append(min(self.eos_ids))
            meta["retokenized"] = True
            logprobs = None
        if not params.logprobs:
            logprobs = None
        if isinstance(data.get("usage"), dict):
            meta["usage"] = data["usage"]
        return Completion(ids=ids, logprobs=logprobs, finish_reason=finish, stop=stop, meta=meta)

    async def load_weights(self, source: Any = None) -> None:
        """A no-op: the served model's weights are synced by whoever runs the server (logged once)."""
        if not self._warned_weights:
            self._warned_weights = True
            log.warning("openai backend: load_weights does nothing here; sync the weights of the server at %s "
                        "yourself (e.g. vLLM's reload_weights)", self.url)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._per_loop.pop(loop, None)
        if entry is not None:
            await entry[0].close()

