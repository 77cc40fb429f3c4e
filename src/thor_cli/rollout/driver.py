"""``TrajectoryDriver``: one trajectory driven step by step, for stages that interleave another author.

The engine's own loop (``RolloutEngine.rollout``) decides everything itself. TIRGen needs to stop
the policy after a window of text, hand the text to a critic, run the critic's cells in the
trajectory's own sandbox session and splice text the critic wrote before the policy goes on. The
driver gives exactly those moves, with the engine's bookkeeping (``TrajState``: the context is
always ``prompt_ids + ids of every turn``; seeds from ``seed_for``; sessions rebuilt by replay)::

    async with engine.drive(problem, key, sample) as tr:
        comp = await tr.generate(max_tokens=512)                 # the policy's next ids (not kept yet)
        tr.keep_sampled(comp.ids[:k], comp.logprobs[:k])          # keep a prefix of them (author policy)
        tr.add_text("Work: ", author="critic")                  # text another author wrote
        res = await tr.call("python", "print(6*7)", author="critic")  # a cell, run and spliced
        fields = tr.fields()                                      # what RolloutEngine.rollout returns

Only sampled ids are kept as the policy's; text from another author is tokenized once, segment by
segment, with the policy's tokenizer (so turn boundaries are exact), and never re-tokenized after.
"""

from __future__ import annotations

from typing import Any

from thor_cli.backends.base import Completion, SamplingParams
from thor_cli.errors import SandboxError, ThorError, UsageError
from thor_cli.records.schema import Author, ExecResult, TokenSource, Turn
from thor_cli.rollout.config import seed_for
from thor_cli.rollout.state import TrajState


class TrajectoryDriver:
    def __init__(self, engine: Any, st: TrajState, key: str, sample: int) -> None:
        self.engine = engine
        self.st = st
        self.key = key
        self.sample = sample

    @property
    def n_completion(self) -> int:
        return self.st.n_completion

    @property
    def turns(self) -> list[Turn]:
        return self.st.turns

    def text(self) -> str:
        """The completion so far, tool output included."""
        return "".join(t.text for t in self.st.turns)

    async def generate(self, max_tokens: int, *, stops: tuple[str, ...] = ()) -> Completion:
        """The policy's next completion from the current context (kept only by ``keep_sampled``).
        ``max_tokens`` is capped by the run's token budget and the model's context."""
        cfg = self.engine.cfg
        room = int(getattr(self.engine.backend, "max_context", 0) or 1 << 30) - len(self.st.ctx)
        limit = min(max_tokens, cfg.max_tokens - self.st.n_completion, room)
        if limit <= 0:
            return Completion(ids=[], logprobs=[], finish_reason="length")
        params = SamplingParams(max_tokens=limit, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                stop=stops, seed=seed_for(cfg.seed, self.key, self.sample, self.st.gen_calls))
        self.st.gen_calls += 1
        self.engine.stats["generate_calls"] += 1
        comp: Completion = await self.engine.backend.generate(list(self.st.ctx), params)
        if len(comp.ids) > limit:
            raise ThorError(f"backend {self.engine.backend.name} returned {len(comp.ids)} ids for max_tokens={limit}",
                            "this is a backend bug")
        return comp

    def decode(self, ids: list[int]) -> str:
        return str(self.engine.tok.decode(ids))

    def cut_at_line_break(self, ids: list[int]) -> int:
        """How many of ``ids`` to keep so the kept text ends at its last line break (all of them
        when there is none)."""
        text = self.decode(ids)
        nl = text.rfind("\n")
        if nl < 0:
            return len(ids)
        k = self.engine.tok.split_at(ids, text, nl + 1)
        return k if k > 0 else len(ids)

    def keep_sampled(self, ids: list[int], logprobs: list[float] | None, kind: str = "text") -> None:
        """Keep ids the policy sampled (author policy)."""
        self.st.add_sampled(kind, ids, logprobs)

    def add_text(self, text: str, *, author: Author, kind: str = "text", tool: str | None = None) -> None:
        """Append text another author wrote, tokenized once with the policy's tokenizer."""
        if author == "policy":
            raise UsageError("add_text is for text another author wrote", "keep sampled ids with keep_sampled")
        ids = self.engine.tok.encode(text)
        if not ids:
            return
        self.st.turns.append(Turn(kind=kind, text=text, ids=ids, tool=tool, author=author))  # type: ignore[arg-type]
        self.st.ctx.extend(ids)

    def add_ids(self, ids: list[int], *, author: Author, kind: str = "text") -> None:
        """Append ids another author chose (e.g. an end-of-turn token after a critic's final step)."""
        if not ids:
            return
        self.st.turns.append(Turn(kind=kind, text=self.decode(ids), ids=list(ids), author=author))  # type: ignore[arg-type]
        self.st.ctx.extend(ids)

    async def execute(self, tool: str, arg: str) -> ExecResult:
        """Run a call in the trajectory's own session of ``tool`` without keeping it (see ``call``)."""
        if tool not in self.engine.tools:
            raise UsageError(f"tool {tool!r} is not enabled in this run", "enable it in the run's options")
        sess = await self.st.session(tool, self.engine.tools[tool])
        res: ExecResult = await sess.run(arg)
        if res.status == "sandbox_error":
            raise SandboxError(f"the {tool} tool failed: {res.error or res.stderr}", "see the sandbox logs")
        return res

    def discard_calls(self, tool: str) -> None:
        """Calls were run (``execute``) but not kept: rebuild the session from the kept cells before
        the next call, so their side effects are gone."""
        if self.engine.tools.get(tool) is not None and self.engine.tools[tool].stateful:
            self.st.dirty.add(tool)

    def add_call(self, tool: str, arg: str, res: ExecResult, *, author: Author) -> None:
        """Keep a call that ran (``execute``): its code turn (rendered by the protocol, by
        ``author``) and its output turn (author tool)."""
        proto = self.engine.protocol
        self.add_text(proto.render_call(tool, arg), author=author, kind="code", tool=tool)
        out_ids = self.engine.tok.encode(proto.format_result(res, self.engine.cfg.max_output_chars))
        self.st.add_output(out_ids, res, tool)
        self.st.kept_cells.append((tool, arg, res.status))
        self.st.n_calls += 1
        self.st.n_calls_new += 1

    def fields(self, stop_reason: str, error: str | None = None) -> dict[str, Any]:
        """The record fields ``RolloutEngine.rollout`` would return for this trajectory."""
        self.st.stop_reason = stop_reason
        cfg = self.engine.cfg
        source = (TokenSource(tokenizer=self.engine.tok.fingerprint, temperature=cfg.temperature, top_p=cfg.top_p,
                              top_k=cfg.top_k) if cfg.keep_ids else None)
        return self.st.fields(self.sample, error, self.engine.protocol, keep_ids=cfg.keep_ids, source=source)

    def final_answer(self) -> str | None:
        return self.engine.protocol.final_answer(self.st.model_text())
