"""``Judge``: asks a model whether a predicted answer means the gold, through the rollout engine.

Only the rollout engine talks to a model: the judge renders ``prompt.render`` as a user message
(the engine's chat rendering, then ``prompt.PREFILL`` to start the reply) and runs it as a
tool-free trajectory (``RolloutConfig(tools=())``, greedy by default) on any
backend from ``thor_cli.backends.load_backend``. It parses ``VERDICT``/``REASON`` from the reply,
and keeps every valid verdict in a ``JudgeCache`` keyed by what the judge saw, so a rerun asks
nothing twice. Identical questions in one batch are asked once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thor_cli import aio
from thor_cli.grading.extract import trajectory_text
from thor_cli.judge.cache import JudgeCache
from thor_cli.judge.prompt import PREFILL, content_key, parse_verdict, render


@dataclass(frozen=True)
class JudgeItem:
    pred: str
    gold: str
    question: str | None = None


@dataclass(frozen=True)
class JudgeVerdict:
    verdict: str  # "yes" | "no" | "invalid" (no VERDICT line, or the backend failed)
    reason: str
    model: str
    cached: bool = False

    def to_dict(self) -> dict[str, str]:
        return {"verdict": self.verdict, "reason": self.reason, "model": self.model}


class Judge:
    """Judges (pred, gold, question) items with one backend; reuse it for a run, then close it.

    ``model`` names the judge in the cache key and the grades (the backend's own model name when
    it has one). ``cache``: a JudgeCache, or None for no cache.
    """

    def __init__(self, backend: Any, model: str, *, cache: JudgeCache | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, system_prompt: str | None = None, concurrency: int = 16,
                 seed: int = 0, backend_factory: Callable[[], Any] | None = None) -> None:
        """``backend``: a Backend, or None with ``backend_factory`` to build one on the first question
        the cache cannot answer (a run answered from the cache never loads the model)."""
        from thor_cli.rollout import RolloutConfig

        self.backend = backend
        self._factory = backend_factory
        self.model = model
        self.cache = cache
        self.concurrency = concurrency
        self.cfg = RolloutConfig(tools=(), max_tokens=max_tokens, temperature=temperature, top_p=1.0,
                                 system_prompt=system_prompt, seed=seed, keep_ids=False, self_correct=False)
        self.stats = {"asked": 0, "cached": 0, "invalid": 0}
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def load(cls, backend: str, model: str, *, backend_options: dict[str, Any] | None = None,
             **kw: Any) -> Judge:
        """A judge on a backend loaded by name (hf, vllm, openai, scripted) when first needed."""
        from thor_cli.backends import BACKENDS, load_backend
        from thor_cli.errors import UsageError

        if backend not in BACKENDS:  # a usage error now, not at the first undecided answer
            raise UsageError(f"unknown judge backend {backend!r}", f"choose one of: {', '.join(sorted(BACKENDS))}")
        return cls(None, model, backend_factory=lambda: load_backend(backend, model, **(backend_options or {})),
                   **kw)

    def key(self, item: JudgeItem) -> str:
        return content_key(item.pred, item.gold, item.question, self.model, self.cfg.system_prompt)

    async def ajudge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        """One verdict per item: from the cache, else from the model (each distinct prompt once)."""
        from thor_cli.rollout import RolloutEngine

        keys = [self.key(it) for it in items]
        out: dict[str, JudgeVerdict] = {}
        todo: dict[str, JudgeItem] = {}
        for k, it in zip(keys, items, strict=True):
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None:
                out[k] = JudgeVerdict(hit["verdict"], hit.get("reason", ""), self.model, cached=True)
                self.stats["cached"] += 1
            else:
                todo.setdefault(k, it)
        if todo:
            if self.backend is None:
                if self._factory is None:
                    raise ValueError("Judge has neither a backend nor a backend_factory")
                self.backend = self._factory()
            async with RolloutEngine(self.backend, self.cfg, tools={}) as engine:
                prefill = list(self.backend.tokenizer.encode(PREFILL, add_special_tokens=False))
                problems = [({"id": k, "prompt_ids": engine.prompt_ids({"prompt": render(it.pred, it.gold, it.question)})
                              + prefill}, k, 0) for k, it in todo.items()]
                async for (_, k, _), fields in engine.run(problems, concurrency=self.concurrency):
                    self.stats["asked"] += 1
                    out[k] = self._verdict(k, todo[k], fields)
        return [out[k] for k in keys]

    def _verdict(self, key: str, item: JudgeItem, fields: dict[str, Any]) -> JudgeVerdict:
        traj = fields.get("trajectory") or {}
        text = trajectory_text(traj) if isinstance(traj, dict) else ""
        if fields.get("error") and not text.strip():
            verdict, reason = "invalid", f"judge backend failed: {fields['error']}"
        else:
            verdict, reason = parse_verdict(PREFILL + text)
        if verdict == "invalid":
            self.stats["invalid"] += 1
        elif self.cache is not None:
            self.cache.put(key, {"verdict": verdict, "reason": reason, "model": self.model,
                                 "pred": item.pred, "gold": item.gold})
        return JudgeVerdict(verdict, reason, self.model)

    def judge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        """``ajudge`` from synchronous code, on a private event loop kept until :meth:`close`
        (a backend's client may belong to the loop that first used it)."""
        if not items:
            return []
        if self._loop is None:
            self._loop = aio.new_event_loop()
        return self._loop.run_until_complete(self.ajudge(items))

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if self.backend is None:
            if loop is not None:
                loop.close()
            return
        if loop is None:
            loop = aio.new_event_loop()
        try:
            loop.run_until_complete(self.backend.close())
        finally:
            loop.close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
