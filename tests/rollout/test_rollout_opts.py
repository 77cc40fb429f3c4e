"""The shared rollout flags parse into RunOptions, and a RunSession builds (backend, tools, engine) from them.

Moved from the old cli.rollout_opts.build_rollout/rollout_config tests: the same checks, now on
thor_cli.stages (RunOptions is the one source of defaults; RunSession owns the lifetimes).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from thor_cli.cli import rollout_opts as ro
from thor_cli.errors import UsageError
from thor_cli.stages import RunOptions, RunSession

D = ro.D


def _app(seen: dict[str, Any]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def main(model: ro.Model, backend: ro.BackendName = D.backend, protocol: ro.ProtocolName = D.protocol,
             temperature: ro.Temperature = D.temperature, top_p: ro.TopP = D.top_p, top_k: ro.TopK = D.top_k,
             max_tokens: ro.MaxTokens = D.max_tokens, max_tool_calls: ro.MaxToolCalls = D.max_tool_calls,
             self_correct: ro.SelfCorrect = D.self_correct, max_corrections: ro.MaxCorrections = D.max_corrections,
             backoff_tokens: ro.BackoffTokens = D.backoff_tokens,
             max_output_chars: ro.MaxOutputChars = D.max_output_chars, system_prompt: ro.SystemPrompt = None,
             no_tools: ro.NoTools = False, concurrency: ro.Concurrency = D.concurrency,
             keep_ids: ro.KeepIds = True, timeout: ro.CellTimeout = D.timeout, memory: ro.CellMemory = D.memory,
             workers: ro.Workers = None, base_url: ro.BaseUrl = None, api_key: ro.ApiKey = None,
             search_corpus: ro.SearchCorpus = None, search_url: ro.SearchUrl = None) -> None:
        seen.update({k: v for k, v in locals().items() if k != "seen"})

    return app


def test_flags_parse_and_build(tiny_model_dir: Path, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "0", "contents": "\\"T\\"\\nsome text"}\n')
    r = CliRunner().invoke(_app(seen), ["--model", str(tiny_model_dir), "--backend", "scripted", "--protocol", "tapo",
                                        "-t", "1.0", "--top-k", "20", "--no-self-correct", "--backoff-tokens", "0",
                                        "--drop-ids", "--timeout", "3", "--search-corpus", str(corpus)])
    assert r.exit_code == 0, r.output
    opts = RunOptions.from_values(seed=7, **seen)

    async def go() -> tuple[Any, dict[str, Any], Any]:
        async with RunSession(opts) as run:
            assert run.pool is not None  # the python tool's pool, started by the session
            return run.backend, dict(run.tools), run.engine.cfg

    be, tools, cfg = asyncio.run(go())
    assert be.name == "scripted" and be.tokenizer is not None
    assert set(tools) == {"python", "search"} and tools["python"].timeout == 3.0
    assert (cfg.protocol, cfg.temperature, cfg.top_k, cfg.self_correct, cfg.backoff_tokens, cfg.keep_ids,
            cfg.seed) == ("tapo", 1.0, 20, False, 0, False, 7)
    assert cfg.tools == ("python", "search")


def test_no_tools_and_bad_values() -> None:
    assert RunOptions(no_tools=True).rollout_config().tools == ()
    assert RunOptions(protocol="tapo").rollout_config().tools == ("python",)
    with pytest.raises(UsageError):
        RunOptions(top_p=0.0).rollout_config()
    with pytest.raises(UsageError):
        asyncio.run(RunSession(RunOptions(model="x", protocol="nope")).__aenter__())
    with pytest.raises(UsageError, match="unknown run options"):
        RunOptions.from_values(temprature=0.5)


def test_the_session_closes_what_it_started_when_the_backend_fails_to_load(pool_starts: list) -> None:
    """A model that cannot load: the sandbox pool started before it is closed again."""
    opts = RunOptions(model="/no/such/model", backend="hf")

    async def go() -> None:
        async with RunSession(opts):
            pass

    with pytest.raises(Exception, match="no/such/model"):
        asyncio.run(go())
    assert len(pool_starts) == 1 and pool_starts[0].closing
