"""One trajectory's bookkeeping: turns, the context ids, back-offs, tool sessions and replay.

Invariant (tested by property tests): ``ctx == prompt_ids + [ids of every turn, in order]``, and
that is exactly what the next generate call is conditioned on. Back-offs only ever remove a
suffix of model-sampled ids, and never reach back past a tool output.
"""

from __future__ import annotations

from typing import Any

from thor_cli.errors import SandboxError, UsageError
from thor_cli.log import log
from thor_cli.records.access import drop_ids
from thor_cli.records.schema import ExecResult, Retry, TokenSource, Trajectory, Turn
from thor_cli.rollout.protocols import ToolProtocol, get_protocol
from thor_cli.rollout.tokens import Tok
from thor_cli.tools.base import Tool, ToolSession

# Kept cells with these statuses are replayed when a session is rebuilt; a cell that timed out or
# was killed is not (it would cost its whole time limit again, and it left no state behind in a
# sandbox that restarts the session).
REPLAY_STATUSES = ("ok", "error")


class TrajState:
    def __init__(self, tok: Tok, prompt_ids: list[int], protocol: str) -> None:
        self.tok = tok
        self.protocol: ToolProtocol = get_protocol(protocol)
        self.prompt_ids = list(prompt_ids)
        self.ctx: list[int] = list(prompt_ids)
        self.turns: list[Turn] = []
        self.retries: list[Retry] = []
        self.n_calls = 0  # executed tool calls, retried ones included (the budget)
        self.n_calls_new = 0  # of those, run by this engine call (not a loaded prefix)
        self.n_corrections = 0
        self.n_corrections_new = 0
        self.row = 0  # self-corrections since the last successful call
        self.gen_calls = 0
        self.kept_cells: list[tuple[str, str, str]] = []  # (tool, call, status) of cells kept in turns
        self.dirty: set[str] = set()  # stateful tools whose session must be rebuilt by replay
        self.sessions: dict[str, ToolSession] = {}
        self.stop_reason = "eos"
        self.prefix_turns = 0
        self.prefix_tokens = 0

    @property
    def n_completion(self) -> int:
        return len(self.ctx) - len(self.prompt_ids)

    def model_text(self) -> str:
        return "".join(t.text for t in self.turns if t.kind != "output")

    # ---- appending ----------------------------------------------------------------------------

    def add_sampled(self, kind: str, ids: list[int], logprobs: list[float] | None, text: str | None = None,
                    tool: str | None = None) -> None:
        if not ids:
            return
        self.turns.append(Turn(kind=kind, text=self.tok.decode(ids) if text is None else text,  # type: ignore[arg-type]
                               ids=list(ids), logprobs=list(logprobs) if logprobs is not None else None, tool=tool))
        self.ctx.extend(ids)

    def add_output(self, ids: list[int], res: ExecResult, tool: str | None) -> None:
        self.turns.append(Turn(kind="output", text=self.tok.decode(ids), ids=list(ids), exec=dict(res.__dict__),
                               tool=tool))
        self.ctx.extend(ids)

    # ---- removing -----------------------------------------------------------------------------

    def back_off(self, n: int) -> tuple[list[int], str]:
        """Remove the last ``n`` policy-sampled ids (stopping at a tool output, at text another
        author wrote, or at the prompt)."""
        dropped: list[int] = []
        text = ""
        while n > 0 and self.turns and self.turns[-1].sampled:
            t = self.turns[-1]
            if len(t.ids) <= n:
                self.turns.pop()
                dropped, text, n = t.ids + dropped, t.text + text, n - len(t.ids)
                continue
            keep = len(t.ids) - n
            gone = t.ids[keep:]
            self.turns[-1] = Turn(kind=t.kind, text=self.tok.decode(t.ids[:keep]), ids=t.ids[:keep],
                                  logprobs=t.logprobs[:keep] if t.logprobs is not None else None, tool=t.tool,
                                  author=t.author)
            dropped, text, n = gone + dropped, self.tok.decode(gone) + text, 0
        if dropped:
            del self.ctx[len(self.ctx) - len(dropped):]
        return dropped, text

    def retry(self, reason: str, res: ExecResult, backoff_tokens: int) -> None:
        """Self-correction: drop the failed code turn and the ``backoff_tokens`` before it."""
        code = self.turns.pop()
        del self.ctx[len(self.ctx) - len(code.ids):]
        ids, text = self.back_off(backoff_tokens)
        self.retries.append(Retry(at_turn=len(self.turns), dropped_text=text + code.text,
                                  dropped_ids=ids + code.ids, reason=reason, exec=dict(res.__dict__)))
        self.n_corrections += 1
        self.n_corrections_new += 1
        self.row += 1

    # ---- tool sessions ------------------------------------------------------------------------

    async def session(self, name: str, tool: Tool) -> ToolSession:
        if name in self.dirty and name in self.sessions:
            await self.sessions.pop(name).close()
        if name not in self.sessions:
            self.sessions[name] = await tool.session()
        if name in self.dirty:
            self.dirty.discard(name)
            sess = self.sessions[name]
            for tname, call, status in self.kept_cells:
                if tname == name and status in REPLAY_STATUSES:
                    res = await sess.run(call)
                    if res.status == "sandbox_error":
                        raise SandboxError(f"replaying a kept cell failed: {res.error}", "see the sandbox logs")
                    if res.status != status:
                        log.debug("replayed cell gave %s where it first gave %s", res.status, status)
        return self.sessions[name]

    async def close_sessions(self) -> None:
        for sess in self.sessions.values():
            try:
                await sess.close()
            except Exception as e:  # noqa: BLE001 -- closing never fails a finished trajectory
                log.debug("closing a tool session failed: %s", e)
        self.sessions.clear()

    # ---- prefixes and output ------------------------------------------------------------------

    def load_prefix(self, traj: Trajectory, cut_turn: int, tools: dict[str, Tool], backoff_tokens: int = 0) -> None:
        """Start from ``traj.turns[:cut_turn]`` minus the last ``backoff_tokens`` sampled ids (see
        ``back_off``); kept cells are replayed before the next call. Retries and the call counts
        are those of the prefix that is left."""
        turns = traj.turns[:cut_turn]
        if turns and turns[-1].kind == "code":
            raise UsageError(f"cut_turn {cut_turn} would end inside a tool call (after a code turn)",
                             "cut before the code turn or after its output")
        retokenized = 0
        ends = [0]  # ends[i]: completion length after turns[:i]
        for i, t in enumerate(turns):
            ids = list(t.ids)
            if not ids and t.text:
                ids, retokenized = self.tok.encode(t.text), retokenized + 1
            self.turns.append(Turn(kind=t.kind, text=t.text, ids=ids, logprobs=t.logprobs, exec=t.exec, tool=t.tool,
                                   author=t.author))
            self.ctx.extend(ids)
            ends.append(ends[-1] + len(ids))
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            if t.kind == "code" and nxt is not None and nxt.kind == "output":
                stop = next((s for s in self.protocol.call_stops if s in t.text), self.protocol.call_stops[0])
                call = self.protocol.parse_call(t.text, stop)
                status = (nxt.exec or {}).get("status", "ok")
                if call.error is None:
                    self.kept_cells.append((call.tool, call.arg, status))
                    if call.tool in tools and tools[call.tool].stateful:
                        self.dirty.add(call.tool)
        if retokenized:
            log.warning("continue_from: %d turns had no token ids (written with --drop-ids); their text was "
                        "re-tokenized", retokenized)
        self.back_off(backoff_tokens)  # never past a tool output: the kept cells stay kept
        # A retry happened at the end of turns[:at_turn]; it belongs to the prefix when that point
        # survived the back-off (a turn the back-off shortened ends later than the prefix now does).
        self.retries = [r for r in traj.retries
                        if r.at_turn <= len(self.turns) and ends[r.at_turn] <= self.n_completion]
        self.n_corrections = len(self.retries)
        self.n_calls = sum(t.kind == "output" for t in self.turns) + self.n_corrections

    def fields(self, sample: int, error: str | None, protocol: ToolProtocol, *, keep_ids: bool,
               source: TokenSource | None = None) -> dict[str, Any]:
        traj = Trajectory(protocol=protocol.name, turns=self.turns, retries=self.retries,
                          final_answer=protocol.final_answer(self.model_text()), stop_reason=self.stop_reason,  # type: ignore[arg-type]
                          n_tool_calls=self.n_calls, n_corrections=self.n_corrections)
        out: dict[str, Any] = {"sample": sample, "trajectory": traj.to_dict(), "error": error}
        if not keep_ids:
            return drop_ids(out)
        out["prompt_ids"] = list(self.prompt_ids)
        out["completion_ids"] = traj.completion_ids
        out["completion_mask"] = traj.completion_mask
        have = all(t.logprobs is not None for t in self.turns if t.sampled)
        out["completion_logprobs"] = ([lp for t in self.turns
                                       for lp in (t.logprobs if t.sampled and t.logprobs is not None else [0.0] * len(t.ids))]
                                      if have else None)
        if source is not None:
            out["token_source"] = source.to_dict()
        return out
