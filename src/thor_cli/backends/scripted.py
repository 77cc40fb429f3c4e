"""A backend that replays scripted text: for tests, benchmarks and dry runs of the engine.

It tokenizes the scripted completion with the real tokenizer it is given and then behaves like a
real backend under the contract in base.py: it stops at the token that completes a stop string
(keeping that token, which may reach past the stop string), appends EOS when the script ends,
cuts at ``max_tokens`` ("length"), and gives deterministic log-probs (a function of the id, so
tests can check that log-probs stay aligned with ids through every cut).

A script is a list of completions (consumed in call order, the last one repeated) or a function
``f(prompt_text, prompt_ids, call_index) -> str`` (deterministic under concurrency). Every call
is recorded in ``calls`` as (prompt_ids, params, completion): the property tests check that the
engine's segments are exactly what the model was conditioned on.

``delay`` (seconds) simulates generation time; ``serial=True`` lets one call run at a time
(a saturated accelerator), so that benchmarks can measure overlap with tool execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from thor_cli.backends.base import Completion, SamplingParams, raw_decoder
from thor_cli.errors import BackendError, UsageError

Script = Sequence[str] | Callable[[str, list[int], int], str]


def fake_logprob(token_id: int) -> float:
    """The log-prob the scripted backend reports for ``token_id`` (deterministic)."""
    return -((token_id % 7) + 1) / 10.0


def _read_script(path: str) -> list[str]:
    """A script file (``--backend-option script_file=PATH``): a JSON list of completions, or JSONL
    with one completion (a JSON string) per line. For dry runs of a pipeline through the CLI."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"script_file {path}: not found", "pass a JSON list of completions")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise UsageError(f"script_file {path}: not JSON or JSONL ({e})", "write a list of strings") from None
    if not isinstance(data, list) or not data or not all(isinstance(x, str) for x in data):
        raise UsageError(f"script_file {path}: expected a non-empty list of strings", "write a list of completions")
    return data


class ScriptedBackend:
    """Replays scripted completions through a real tokenizer. See the module docstring."""

    name = "scripted"

    def __init__(self, model: str | None = None, *, tokenizer: Any = None, script: Script | None = None,
                 delay: float = 0.0, serial: bool = False, max_context: int = 32768, eos: bool = True,
                 logprobs: bool = True, decode_prompts: bool = True, script_file: str | None = None,
                 **_: Any) -> None:
        if script is None and script_file is not None:
            script = _read_script(script_file)
        if tokenizer is None:
            if model is None:
                raise UsageError("the scripted backend needs a tokenizer", "pass tokenizer= or a model folder")
            from transformers import AutoTokenizer

            from thor_cli.models.resolve import resolve_model

            tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
        self.tokenizer = tokenizer
        self.script: Script = script if script is not None else ["The answer is \\boxed{0}."]
        self.delay = delay
        self.max_context = max_context
        self.eos = eos
        self.give_logprobs = logprobs
        self.decode_prompts = decode_prompts
        self.eos_id: int | None = tokenizer.eos_token_id
        self._decode = raw_decoder(tokenizer)
        self.calls: list[tuple[list[int], SamplingParams, Completion]] = []
        self._n = 0
        self.busy_s = 0.0  # seconds spent in simulated generation (delay), summed over calls
        self._lock = asyncio.Lock() if serial else None
        self._cache: dict[str, list[int]] = {}
        self.weight_loads = 0

    def _text(self, prompt_ids: list[int], index: int) -> str:
        if callable(self.script):
            text = self.tokenizer.decode(prompt_ids) if self.decode_prompts else ""
            return self.script(text, prompt_ids, index)
        if not self.script:
            raise BackendError("scripted backend has an empty script", "give it at least one completion")
        return self.script[min(index, len(self.script) - 1)]

    def _encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))
            if len(self._cache) < 4096:
                self._cache[text] = ids
        return list(ids)

    def _cut_at_stop(self, ids: list[int], text: str, stops: tuple[str, ...]) -> tuple[list[int], str | None]:
        """Cut after the first token whose prefix decode contains a stop string (like a real sampler)."""
        hits = [(text.find(s), s) for s in stops if s and s in text]
        if not hits:
            return ids, None
        lo, hi = 1, len(ids)  # smallest k with a stop in decode(ids[:k])
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in self._decode(ids[:mid]) for _, s in hits):
                hi = mid
            else:
                lo = mid + 1
        prefix = self._decode(ids[:lo])
        found = min((prefix.find(s), s) for _, s in hits if s in prefix)
        return ids[:lo], found[1]

    async def _sleep(self) -> None:
        if self.delay:
            t0 = time.perf_counter()
            await asyncio.sleep(self.delay)
            self.busy_s += time.perf_counter() - t0

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        index = self._n
        self._n += 1
        if self._lock is not None:
            async with self._lock:
                await self._sleep()
        else:
            await self._sleep()
        text = self._text(list(prompt_ids), index)
        ids = self._encode(text)
        ids, stop = self._cut_at_stop(ids, text, params.stop)
        finish: Any = "stop" if stop is not None else "eos"
        if stop is None and self.eos and self.eos_id is not None:
            ids.append(self.eos_id)
        if stop is None and not self.eos:
            finish = "length"
        if len(ids) > params.max_tokens:
            ids, finish, stop = ids[:params.max_tokens], "length", None
        lps = [fake_logprob(i) for i in ids] if self.give_logprobs and params.logprobs else None
        comp = Completion(ids=ids, logprobs=lps, finish_reason=finish, stop=stop, meta={"call": index})
        self.calls.append((list(prompt_ids), params, comp))
        return comp

    async def load_weights(self, source: Any = None) -> None:
        """A no-op: a script has no weights. Counted in ``weight_loads`` for tests of callers."""
        self.weight_loads += 1

    async def close(self) -> None:
        return None
