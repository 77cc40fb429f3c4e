"""Options shared by every command that runs rollouts (eval, gen, rl), defined once.

A command declares the ones it needs with these ``Annotated`` aliases and hands the values to
``build_rollout``, which returns (backend, tools, RolloutConfig) ready for ``RolloutEngine``::

    def main(model: Model, backend: BackendName = "hf", protocol: ProtocolName = "thor", ...):
        be, tools, cfg = build_rollout(model=model, backend=backend, protocol=protocol, ...)
        async with RolloutEngine(be, cfg, tools=tools) as engine: ...

Defaults are THOR's evaluation settings (T 0.6, top_p 1, 4096 tokens, 10 tool calls, 4
corrections backing off 500 tokens). Heavy imports happen inside ``build_rollout`` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from thor_cli.sandbox import Sandbox

Model = Annotated[str, typer.Option("--model", "-m", help="Model: a cached name (thor models list), a checkpoint "
                                    "folder or an HF id.", show_default=False)]
BackendName = Annotated[str, typer.Option("--backend", help="Generation backend: hf (transformers, CPU or one "
                                          "GPU) | vllm (GPU, optional extra) | openai (any compatible server).")]
ProtocolName = Annotated[str, typer.Option("--protocol", help="Tool protocol: thor (```python cells, ```output "
                                           "results, \\boxed answer) | tapo (<code>/<search> tags, <answer>).")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", help="Sampling temperature (0: greedy).")]
TopP = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
TopK = Annotated[int, typer.Option("--top-k", help="Top-k sampling (-1: off).")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Completion tokens per trajectory, tool output "
                                        "included (the paper: 4096; 16384 for reasoning models).")]
MaxToolCalls = Annotated[int, typer.Option("--max-tool-calls", help="Tool calls per trajectory, self-corrected "
                                           "ones included (THOR: 10 at eval, 5 in RL; TAPO: 4).")]
SelfCorrect = Annotated[bool, typer.Option("--self-correct/--no-self-correct", help="THOR's self-correction: "
                                           "drop a failed cell, back off and regenerate.")]
MaxCorrections = Annotated[int, typer.Option("--max-corrections", help="Self-corrections in a row before a "
                                             "failed cell is kept.")]
BackoffTokens = Annotated[int, typer.Option("--backoff-tokens", help="Sampled tokens before a failed cell that a "
                                            "self-correction also drops (0: cut at the cell's start).")]
MaxOutputChars = Annotated[int, typer.Option("--max-output-chars", help="Tool output shown to the model: head "
                                             "and tail kept within this many characters (0: all).")]
SystemPrompt = Annotated[str | None, typer.Option("--system-prompt", help="System message for the chat "
                                                  "template.", show_default=False)]
NoTools = Annotated[bool, typer.Option("--no-tools", help="Plain chain-of-thought baseline: no tool calls.")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="Trajectories in flight at once.")]
KeepIds = Annotated[bool, typer.Option("--keep-ids/--drop-ids", help="Keep prompt_ids, completion_ids, "
                                       "completion_mask and log-probs in the records (for training).")]
CellTimeout = Annotated[float, typer.Option("--timeout", help="Sandbox: seconds per code cell.")]
CellMemory = Annotated[int, typer.Option("--memory", help="Sandbox: MiB of address space per session.")]
Workers = Annotated[int | None, typer.Option("--workers", help="Sandbox: cells executing at once (default: "
                                             "number of cores).", show_default=False)]
BaseUrl = Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="openai backend: the "
                                             "server's URL (e.g. http://localhost:8000/v1).", show_default=False)]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="openai backend: API key.",
                                            show_default=False)]
SearchCorpus = Annotated[str | None, typer.Option("--search-corpus", help="search tool: a JSONL corpus "
                                                  "({\"id\", \"contents\"}) indexed with BM25.", show_default=False)]
SearchUrl = Annotated[str | None, typer.Option("--search-url", help="search tool: a Search-R1-style retriever "
                                               "(POST /retrieve).", show_default=False)]

DEFAULTS: dict[str, Any] = {
    "backend": "hf", "protocol": "thor", "temperature": 0.6, "top_p": 1.0, "top_k": -1, "max_tokens": 4096,
    "max_tool_calls": 10, "self_correct": True, "max_corrections": 4, "backoff_tokens": 500,
    "max_output_chars": 2048, "system_prompt": None, "no_tools": False, "concurrency": 64, "keep_ids": True,
    "timeout": 10.0, "memory": 1024, "workers": None, "base_url": None, "api_key": None,
    "search_corpus": None, "search_url": None,
}


def tools_for(protocol: str, *, no_tools: bool, search_corpus: str | None, search_url: str | None) -> tuple[str, ...]:
    """python always (unless --no-tools); search too under TAPO when a corpus or retriever is given."""
    if no_tools:
        return ()
    if protocol == "tapo" and (search_corpus or search_url):
        return ("python", "search")
    return ("python",)


def rollout_config(*, seed: int = 0, **values: Any) -> Any:
    """A RolloutConfig from option values (missing ones take DEFAULTS)."""
    from thor_cli.rollout import RolloutConfig

    v = {**DEFAULTS, **values}
    return RolloutConfig(
        protocol=v["protocol"], max_tool_calls=v["max_tool_calls"], max_tokens=v["max_tokens"],
        temperature=v["temperature"], top_p=v["top_p"], top_k=v["top_k"], self_correct=v["self_correct"],
        max_corrections=v["max_corrections"], backoff_tokens=v["backoff_tokens"],
        max_output_chars=v["max_output_chars"], system_prompt=v["system_prompt"], seed=seed,
        keep_ids=v["keep_ids"],
        tools=tools_for(v["protocol"], no_tools=v["no_tools"], search_corpus=v["search_corpus"],
                        search_url=v["search_url"]))


def build_rollout(*, model: str, seed: int = 0, backend_options: dict[str, Any] | None = None,
                  sandbox_pool: Sandbox | None = None, **values: Any) -> tuple[Any, dict[str, Any], Any]:
    """(backend, tools, RolloutConfig) from option values; the caller closes the backend.

    ``sandbox_pool``: a started pool for the python tool to share (else the tool starts its own).
    """
    from thor_cli.backends import load_backend
    from thor_cli.rollout import get_protocol
    from thor_cli.tools import build_tools

    v = {**DEFAULTS, **values}
    get_protocol(v["protocol"])  # a usage error before loading any model
    cfg = rollout_config(seed=seed, **values)
    tools = build_tools(cfg.tools, timeout=v["timeout"], memory_mb=v["memory"], workers=v["workers"],
                        search_corpus=v["search_corpus"], search_url=v["search_url"],
                        sandbox_pool=sandbox_pool) if cfg.tools else {}
    opts = dict(backend_options or {})
    if v["backend"] == "openai":
        opts.setdefault("base_url", v["base_url"])
        opts.setdefault("api_key", v["api_key"])
        opts.setdefault("concurrency", v["concurrency"])
    backend = load_backend(v["backend"], model, **opts)
    return backend, tools, cfg
