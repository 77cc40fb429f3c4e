"""Token helpers: prompts from problems, decoding, and splitting sampled ids at a text position.

Only prompts and tool outputs are ever tokenized. Sampled ids are split, never re-encoded: a
completion "reasoning ```python …```output" becomes a text turn and a code turn by cutting its
ids at the token where the cell begins, so the two turns' ids concatenate to exactly what was
sampled.
"""

from __future__ import annotations

from typing import Any

from thor_cli.backends.base import raw_decoder, tokenizer_fingerprint
from thor_cli.errors import InputError


class Tok:
    """A thin, cached view of a transformers tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tk = tokenizer
        self.eos_id: int | None = tokenizer.eos_token_id
        self._decode = raw_decoder(tokenizer)  # the engine's hot path: the Rust decoder when there is one
        self._enc: dict[str, list[int]] = {}
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """``tokenizer_fingerprint`` of the tokenizer (computed on first use)."""
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self.tk)
        return self._fingerprint

    def encode(self, text: str) -> list[int]:
        ids = self._enc.get(text)
        if ids is None:
            ids = list(self.tk.encode(text, add_special_tokens=False))
            if len(self._enc) < 8192 and len(text) < 4096:
                self._enc[text] = ids
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; a trailing EOS is not shown (the id stays in the turn)."""
        if ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        return self._decode(ids)

    def split_at(self, ids: list[int], text: str, char: int) -> int:
        """Token index k where a segment starting at ``text[char]`` begins: decode(ids[:k]) is a
        clean prefix of ``text`` no longer than ``char`` (so ids[k:] hold the whole segment)."""
        if char <= 0:
            return 0
        lo, hi = 0, len(ids)  # largest k with len(decode(ids[:k])) <= char
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self.decode(ids[:mid])) <= char:
                lo = mid
            else:
                hi = mid - 1
        k = lo
        while k > 0 and not text.startswith(self.decode(ids[:k])):
            k -= 1  # a multi-byte character was split: move to a clean boundary
        return k

    def prompt_ids(self, problem: dict[str, Any], user: str | None, system: str | None) -> list[int]:
        """The prompt of a problem: ``prompt_ids`` as given, or ``messages``, or the user message
        rendered with the model's chat template (plain text when the model has none)."""
        given = problem.get("prompt_ids")
        if isinstance(given, list) and given:
            return [int(i) for i in given]
        messages = problem.get("messages")
        if not isinstance(messages, list):
            if user is None:
                raise InputError('a problem needs "question", "prompt", "messages" or "prompt_ids"',
                                 field="question")
            messages = [{"role": "user", "content": user}]
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        if getattr(self.tk, "chat_template", None):
            out = self.tk.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if hasattr(out, "keys") and "input_ids" in out:
                out = out["input_ids"]
            return [int(i) for i in out]
        text = "\n\n".join(str(m["content"]) for m in messages) + "\n"
        return self.encode(text)
