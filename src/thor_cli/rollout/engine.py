"""The rollout engine: generate, stop at a tool call, run it, splice the result, continue.

One coroutine per trajectory; while one waits on a tool the others generate, and the backend
batches whatever requests are pending. See the package docstring for the API and the
invariants; state.py holds one trajectory's bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from thor_cli.backends.base import Backend, Completion, SamplingParams
from thor_cli.errors import SandboxError, ThorError, UsageError
from thor_cli.grading import is_code
from thor_cli.log import log
from thor_cli.records.schema import ExecResult, TokenSource, Trajectory
from thor_cli.rollout.config import RolloutConfig, seed_for
from thor_cli.rollout.driver import TrajectoryDriver
from thor_cli.rollout.protocols import ToolCall, get_protocol
from thor_cli.rollout.state import TrajState
from thor_cli.rollout.tokens import Tok
from thor_cli.tools.base import Tool

Item = tuple[dict[str, Any], str, int]


class RolloutEngine:
    """Runs tool-integrated trajectories with one backend and a set of tools (see package doc)."""

    def __init__(self, backend: Backend, cfg: RolloutConfig, tools: dict[str, Tool] | None = None) -> None:
        self.backend = backend
        self.cfg = cfg
        self.protocol = get_protocol(cfg.protocol)
        self.tools: dict[str, Tool] = dict(tools or {})
        missing = [t for t in cfg.tools if t not in self.tools]
        if missing:
            raise UsageError(f"the rollout config asks for tools {missing} that were not given",
                             "build them with thor_cli.tools.build_tools(cfg.tools, ...)")
        self.tok = Tok(backend.tokenizer)
        self.with_tools = bool(cfg.tools)
        self.stats = {"trajectories": 0, "errors": 0, "tool_calls": 0, "corrections": 0, "generate_calls": 0}

    async def __aenter__(self) -> RolloutEngine:
        for name in self.cfg.tools:
            await self.tools[name].start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in self.cfg.tools:
            try:
                await self.tools[name].close()
            except Exception as e:  # noqa: BLE001 -- closing must not mask the real error
                log.warning("closing tool %s failed: %s", name, e)

    # ---- public API ---------------------------------------------------------------------------

    def prompt_ids(self, problem: dict[str, Any], *, with_tools: bool | None = None) -> list[int]:
        """The prompt ids the engine would condition on for ``problem`` (``with_tools=False``: the
        protocol's plain chain-of-thought prompt instead, whatever the config says)."""
        user = problem.get("prompt")
        q = problem.get("question")
        tools = self.with_tools if with_tools is None else with_tools
        # A code benchmark's ``prompt`` is the function stub its tests complete (HumanEval), not a
        # user message: a code problem with a question is prompted from the question.
        if not isinstance(user, str) or (is_code(problem) and q is not None):
            user = self.protocol.user_message(str(q), tools) if q is not None else None
        return self.tok.prompt_ids(problem, user, self.cfg.system_prompt)

    async def rollout(self, problem: dict[str, Any], key: str, sample: int) -> dict[str, Any]:
        """One trajectory for ``problem``; returns the fields to merge into its output record."""
        st = TrajState(self.tok, self.prompt_ids(problem), self.cfg.protocol)
        return await self._drive(st, key, sample, one_round=False)

    async def run(self, items: Iterable[Item], concurrency: int = 64,
                  fn: Callable[[dict[str, Any], str, int], Awaitable[dict[str, Any]]] | None = None,
                  ) -> AsyncIterator[tuple[Item, dict[str, Any]]]:
        """Roll out every (problem, key, sample) with at most ``concurrency`` at once; yields
        (item, fields) as each finishes (not in input order). Items are pulled lazily. ``fn``
        replaces ``self.rollout`` as what runs per item (a stage's own use of the engine, e.g.
        TIRGen's actor-critic loop over ``drive``).

        A finished trajectory's slot is refilled at once, also while the consumer is busy with an
        earlier result (grading it, say); at most ``concurrency`` finished results wait for the
        consumer (then no new item starts until it takes one). Close the generator when leaving
        early (``contextlib.aclosing``): the trajectories still running are cancelled and awaited.
        An error from ``items`` is raised after the results already finished are yielded."""
        it = iter(items)
        limit = max(concurrency, 1)
        running: dict[asyncio.Task[dict[str, Any]], Item] = {}
        ready: deque[tuple[Item, asyncio.Task[dict[str, Any]]]] = deque()
        wake = asyncio.Event()
        state: dict[str, Any] = {"exhausted": False, "error": None, "closing": False}

        def refill() -> None:
            while not state["exhausted"] and len(running) < limit and len(running) + len(ready) < 2 * limit:
                try:
                    item = next(it)
                except StopIteration:
                    state["exhausted"] = True
                except Exception as e:  # noqa: BLE001 -- raised to the consumer by the generator below
                    state["exhausted"], state["error"] = True, e
                    wake.set()
                else:
                    task = asyncio.ensure_future((fn or self.rollout)(*item))
                    running[task] = item
                    task.add_done_callback(finished)

        def finished(task: asyncio.Task[dict[str, Any]]) -> None:
            item = running.pop(task)
            if state["closing"]:
                return
            ready.append((item, task))
            wake.set()
            refill()  # in the event loop, right away: not when the consumer comes back

        refill()
        try:
            while True:
                while ready:
                    item, task = ready.popleft()
                    refill()
                    yield item, task.result()
                if state["error"] is not None:
                    raise state["error"]
                if not running:
                    return
                wake.clear()
                await wake.wait()
        finally:
            state["closing"] = True
            tasks = list(running)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            for _, task in ready:  # finished but never taken: retrieve so asyncio does not warn
                if not task.cancelled():
                    task.exception()

    @asynccontextmanager
    async def drive(self, problem: dict[str, Any], key: str, sample: int, *,
                    prompt_ids: list[int] | None = None) -> AsyncIterator[TrajectoryDriver]:
        """One trajectory driven step by step (``rollout/driver.py``); its tool sessions close on
        the way out. ``prompt_ids``: condition on these instead of the problem's prompt."""
        st = TrajState(self.tok, list(prompt_ids) if prompt_ids is not None else self.prompt_ids(problem),
                       self.cfg.protocol)
        try:
            yield TrajectoryDriver(self, st, key, sample)
        finally:
            await st.close_sessions()
            self.stats["trajectories"] += 1
            self.stats["tool_calls"] += st.n_calls_new

    async def continue_from(self, record: dict[str, Any], *, cut_turn: int, backoff_tokens: int = 0,
                            one_round: bool = True, sample: int = 0, key: str | None = None,
                            self_correct: bool | None = None) -> dict[str, Any]:
        """Continue a recorded trajectory from ``turns[:cut_turn]`` minus the last ``backoff_tokens``
        sampled tokens (never reaching back past a tool output). The sandbox session is rebuilt by
        re-running the kept cells. ``one_round``: stop after one tool round (THOR's step-level
        resampling), else run to the end. The result has ``continued_from`` with the prefix size:
        ``completion_ids[:prefix_tokens]`` is the kept prefix (mask it out of step-level losses)."""
        if "trajectory" not in record:
            raise UsageError("continue_from needs a record with a trajectory", "pass a rollout output record")
        traj = Trajectory.from_dict(record["trajectory"])
        if not 0 <= cut_turn <= len(traj.turns):
            raise UsageError(f"cut_turn {cut_turn} is outside the trajectory's {len(traj.turns)} turns",
                             "pass an index into trajectory.turns")
        prompt = record.get("prompt_ids")
        prompt_ids = [int(i) for i in prompt] if isinstance(prompt, list) and prompt else self.prompt_ids(record)
        st = TrajState(self.tok, prompt_ids, self.cfg.protocol)
        st.load_prefix(traj, cut_turn, self.tools, backoff_tokens)
        st.prefix_turns = len(st.turns)
        st.prefix_tokens = st.n_completion
        rkey = key if key is not None else f"{record.get('id', '')}@{cut_turn}"
        fields = await self._drive(st, rkey, sample, one_round=one_round, self_correct=self_correct)
        fields["continued_from"] = {"cut_turn": cut_turn, "backoff_tokens": backoff_tokens,
                                    "prefix_turns": st.prefix_turns, "prefix_tokens": st.prefix_tokens}
        return fields

    # ---- the loop -----------------------------------------------------------------------------

    async def _drive(self, st: TrajState, key: str, sample: int, *, one_round: bool,
                     self_correct: bool | None = None) -> dict[str, Any]:
        error: str | None = None
        try:
            st.stop_reason = await self._loop(st, key, sample, one_round,
                                              self.cfg.self_correct if self_correct is None else self_correct)
        except ThorError as e:
            st.stop_reason, error = "error", f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 -- one trajectory's failure is data; the run goes on
            st.stop_reason, error = "error", f"{type(e).__name__}: {e}"
            log.debug("trajectory %s/%d failed", key, sample, exc_info=True)
        finally:
            await st.close_sessions()
        self.stats["trajectories"] += 1
        self.stats["errors"] += error is not None
        self.stats["tool_calls"] += st.n_calls_new
        self.stats["corrections"] += st.n_corrections_new
        source = (TokenSource(tokenizer=self.tok.fingerprint, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                              top_k=self.cfg.top_k) if self.cfg.keep_ids else None)
        return st.fields(sample, error, self.protocol, keep_ids=self.cfg.keep_ids, source=source)

    async def _loop(self, st: TrajState, key: str, sample: int, one_round: bool, self_correct: bool) -> str:
        cfg, proto = self.cfg, self.protocol
        max_context = int(getattr(self.backend, "max_context", 0) or 1 << 30)
        while True:
            budget = cfg.max_tokens - st.n_completion
            room = max_context - len(st.ctx)
            if room <= 0:
                return "context_overflow"
            if budget <= 0:
                return "max_tokens"
            limit = min(budget, room)
            params = SamplingParams(max_tokens=limit, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                    stop=proto.stops(self.with_tools), seed=seed_for(cfg.seed, key, sample, st.gen_calls))
            st.gen_calls += 1
            self.stats["generate_calls"] += 1
            comp: Completion = await self.backend.generate(list(st.ctx), params)
            if len(comp.ids) > limit:
                raise ThorError(f"backend {self.backend.name} returned {len(comp.ids)} ids for max_tokens={limit}",
                                "this is a backend bug")
            text = self.tok.decode(comp.ids)
            is_call = comp.finish_reason == "stop" and comp.stop in proto.call_stops and self.with_tools
            if not is_call:
                st.add_sampled("text", comp.ids, comp.logprobs, text)
                if comp.finish_reason == "length":
                    return "context_overflow" if room < budget else "max_tokens"
                if comp.finish_reason == "stop" and comp.stop in proto.answer_stops:
                    return "answer"
                return "answer" if proto.final_answer(st.model_text()) is not None else "eos"

            call = proto.parse_call(text, comp.stop or "")
            if call.error is None and call.tool not in cfg.tools:
                call = ToolCall(call.tool, call.arg, call.start, error=f"tool {call.tool!r} is not enabled")
            k = self.tok.split_at(comp.ids, text, call.start)
            st.add_sampled("text", comp.ids[:k], comp.logprobs[:k] if comp.logprobs else None)
            st.add_sampled("code", comp.ids[k:], comp.logprobs[k:] if comp.logprobs else None, tool=call.tool or None)
            if st.n_calls >= cfg.max_tool_calls:
                return "max_tool_calls"

            res = await self._execute(st, call)
            st.n_calls += 1
            st.n_calls_new += 1
            reason = proto.failure(call.tool, res) if call.error is None else "error"
            if res.status == "sandbox_error":
                raise SandboxError(f"the {call.tool} tool failed: {res.error or res.stderr}", "see the sandbox logs")
            if (reason is not None and self_correct and st.row < cfg.max_corrections
                    and st.n_calls < cfg.max_tool_calls):
                st.retry(reason, res, cfg.backoff_tokens)
                if call.tool in self.tools and self.tools[call.tool].stateful and cfg.replay_on_retry:
                    st.dirty.add(call.tool)
                continue
            st.row = 0 if reason is None else st.row

            out_ids = self.tok.encode(proto.format_result(res, cfg.max_output_chars))
            if len(st.ctx) + len(out_ids) >= max_context:
                return "context_overflow"
            if st.n_completion + len(out_ids) > cfg.max_tokens:
                return "max_tokens"
            st.add_output(out_ids, res, call.tool or None)
            if call.error is None:
                st.kept_cells.append((call.tool, call.arg, res.status))
            if one_round:
                return "round_done"

    async def _execute(self, st: TrajState, call: ToolCall) -> ExecResult:
        if call.error is not None:
            return ExecResult(status="error", error=call.error)
        tool = self.tools[call.tool]
        sess = await st.session(call.tool, tool)
        return await sess.run(call.arg)

