"""The rollout engine: the one code path through which gen, rl and eval run a model with tools.

Usage::

    from thor_cli.rollout import RolloutConfig, RolloutEngine
    from thor_cli.tools import build_tools

    cfg = RolloutConfig(protocol="thor", max_tool_calls=10, max_tokens=4096, temperature=0.6, top_p=1.0,
                        top_k=-1, self_correct=True, max_corrections=4, backoff_tokens=500,
                        max_output_chars=2048, system_prompt=None, seed=0, keep_ids=True, tools=("python",))
    tools = build_tools(cfg.tools, timeout=10.0, memory_mb=1024)
    async with RolloutEngine(backend, cfg, tools=tools) as engine:     # starts/closes the tools
        fields = await engine.rollout(problem, key, sample)              # problem: a record dict
        async for (item, fields) in engine.run(items, concurrency=64):  # items: (problem, key, sample)
            ...                                                         # yielded as they finish
        fields = await engine.continue_from(record, cut_turn=i, backoff_tokens=100, one_round=True, sample=s)

``fields`` is merged into the output record::

    {"sample": int, "trajectory": Trajectory.to_dict(), "error": str | None,
     "prompt_ids": [...], "completion_ids": [...], "completion_mask": [...],   # omitted when keep_ids=False
     "completion_logprobs": [...] | None}                                   # 0.0 on tool-output ids
    (+ "continued_from": {"cut_turn", "backoff_tokens", "prefix_turns", "prefix_tokens"} from continue_from)

The prompt: ``problem["prompt_ids"]`` if given, else ``problem["messages"]``, else the user message
``problem["prompt"]`` (not for a code problem, ``task == "code"``, whose ``prompt`` is the function
stub its tests complete) or the protocol's template around ``problem["question"]``; rendered with
the model's chat template (system prompt from the config). It is rendered once: the context is
always ``prompt_ids + ids of every turn``, so a thinking model's earlier ``<think>`` blocks stay.

The loop (per trajectory): generate with the protocol's stop strings, with the seed
``seed_for(cfg.seed, key, sample, call index)``; a completion that stopped at a tool-call stop
string is split (by token index, never re-encoded) into a text turn and a code turn; the call runs
in the trajectory's own tool session; its result is formatted by the protocol (stdout, then the
error line; head + tail truncated to ``max_output_chars``), tokenized and appended as an output
turn (mask 0). It ends with ``stop_reason``: ``answer`` (``</answer>``, or EOS with a ``\\boxed{}``),
``eos``, ``max_tokens`` (every completion id counts, tool output too), ``max_tool_calls``
(a call beyond the budget is kept as an unexecuted code turn; ``one_round`` also ends here),
``context_overflow`` (the backend's ``max_context`` is reached: never a crash) or ``error``
(a backend or tool failure: ``error`` says what; the run goes on; ``engine.stats["errors"]``).

Self-correction (THOR): a python call that failed (error, timeout, killed, memory, or printed
nothing) is dropped with the ``backoff_tokens`` sampled ids before it (0: cut at the cell's
start; never past the last tool output), recorded as a ``Retry``, and the model regenerates; at
most ``max_corrections`` in a row (the count resets after a successful call; after that the
failed cell is kept with its error output), and each retry counts against ``max_tool_calls``.
The dropped cell may have changed the session (variables, files): the session is rebuilt by
replaying the kept cells (status ok or error) before the next call (``replay_on_retry``).
``continue_from`` rebuilds the session the same way.
"""

from __future__ import annotations

from thor_cli.rollout.config import RolloutConfig, seed_for
from thor_cli.rollout.engine import RolloutEngine
from thor_cli.rollout.protocols import PROTOCOLS, TAPO, THOR, ToolProtocol, get_protocol, last_boxed

__all__ = ["PROTOCOLS", "TAPO", "THOR", "RolloutConfig", "RolloutEngine", "ToolProtocol", "get_protocol",
           "last_boxed", "seed_for"]
