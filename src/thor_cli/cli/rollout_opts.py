"""Flags shared by every command that runs rollouts (eval, gen, rl), defined once.

A command declares the ones it needs with these ``Annotated`` aliases, with defaults from
``D = RunOptions()`` (the one source of defaults, ``thor_cli/stages/options.py``), and hands
the values to ``RunOptions.from_values``; the stage runs them in a ``RunSession``::

    def main(model: Model, backend: BackendName = D.backend, temperature: Temperature = D.temperature, ...):
        opts = RunOptions.from_values(model=model, backend=backend, temperature=temperature, ...)
        async with RunSession(opts) as run: ...   # run.engine, run.pool
"""

from __future__ import annotations

from typing import Annotated

import typer

from thor_cli.stages.options import RunOptions

D = RunOptions()  # the defaults of every flag below

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
SandboxUrl = Annotated[str | None, typer.Option("--sandbox-url", help="Run cells on a thor exec serve server "
                                                "(http://HOST:PORT or unix:/path) instead of a local pool.",
                                                show_default=False)]
BackendOption = Annotated[list[str] | None, typer.Option("--backend-option", help="An engine option of the backend, "
                                                        "KEY=VALUE (repeatable; JSON values): e.g. dtype=float32, "
                                                        "enforce_eager=true (vllm), max_batch=16 (hf).",
                                                        show_default=False)]
