"""The one async interface every generation engine implements.

A backend turns token-id prompts into sampled token ids. It knows nothing about tools: the
rollout engine calls ``generate`` once per model turn, with the protocol's stop strings.

Contract (every backend, tested in tests/backends/):
- ``generate(prompt_ids, params)`` returns the ids the model sampled after ``prompt_ids``, and
  nothing else: no prompt echo, no re-tokenized text. If a stop string completes, generation
  ends with the token that completed it (that token is kept, like vLLM's
  include_stop_str_in_output=True), ``finish_reason == "stop"`` and ``stop`` names the string.
  The EOS token, if sampled, is kept as the last id and ``finish_reason == "eos"``. Hitting
  ``max_tokens`` gives ``finish_reason == "length"``.
- ``logprobs[i]`` is the log-probability of ``ids[i]`` under the sampling distribution actually
  used (after temperature), or None when the backend cannot give it.
- The same (prompt_ids, params with a seed) give the same ids on the same backend and machine.
- Many coroutines may await ``generate`` at once; the backend batches whatever is pending.
- ``load_weights(source)`` puts new weights into the running model between two decoding steps
  (never during a forward); requests in flight continue with the new weights. What ``source``
  may be is the backend's own (a state dict, a module or a checkpoint folder for hf and vllm);
  a backend whose weights live elsewhere (openai: a remote server, synced by whoever runs it;
  scripted) documents it as a no-op.

The sampling distribution and the log-probs of the in-process backends come from sampling.py,
the same code a trainer uses to score completions (``token_logprobs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = True


@dataclass
class Completion:
    ids: list[int]
    logprobs: list[float] | None
    finish_reason: FinishReason
    stop: str | None = None  # the stop string that ended generation, when finish_reason == "stop"
    meta: dict[str, Any] = field(default_factory=dict)  # backend-specific extras (timings, usage)


@runtime_checkable
class Backend(Protocol):
    """A loaded model that samples tokens. ``tokenizer`` is a transformers tokenizer."""

    name: str
    tokenizer: Any
    max_context: int  # prompt + completion tokens the model accepts

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion: ...

    async def load_weights(self, source: Any) -> None:
        """Load new weights into the running model (see the module docstring)."""
        ...

    async def close(self) -> None: ...


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of what token ids mean for ``tokenizer``: its vocabulary, added tokens included.

    Two tokenizers with the same fingerprint map every id to the same token, so ids one made can be
    fed to a model that uses the other (token-in, token-out); any other pair never shares ids.
    Computed once per tokenizer object (about 0.1 s for a 150k vocabulary).

    >>> class T:
    ...     def get_vocab(self): return {"a": 0, "b": 1}
    >>> tokenizer_fingerprint(T()) == tokenizer_fingerprint(T())
    True
    """
    cached = getattr(tokenizer, "_thor_fingerprint", None)
    if isinstance(cached, str):
        return cached
    import hashlib

    import orjson

    vocab = sorted((str(k), int(v)) for k, v in tokenizer.get_vocab().items())
    fp = hashlib.sha256(orjson.dumps(vocab)).hexdigest()[:16]
    try:
        tokenizer._thor_fingerprint = fp
    except AttributeError:  # a tokenizer that refuses new attributes: computed again next time
        pass
    return fp


def raw_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """``ids -> text`` with special tokens kept and no clean-up of spaces. A fast tokenizer's Rust
    decoder gives the same text as ``tokenizer.decode(..., clean_up_tokenization_spaces=False)`` at
    a fraction of the cost, which matters on the per-token and per-turn paths."""
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if fast is not None:
        return lambda ids: str(fast.decode(ids, skip_special_tokens=False))
    return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
