"""The shared rollout options parse as flags and build (backend, tools, config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from thor_cli.cli import rollout_opts as ro
from thor_cli.errors import UsageError


def _app(seen: dict[str, Any]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def main(model: ro.Model, backend: ro.BackendName = "hf", protocol: ro.ProtocolName = "thor",
             temperature: ro.Temperature = 0.6, top_p: ro.TopP = 1.0, top_k: ro.TopK = -1,
             max_tokens: ro.MaxTokens = 4096, max_tool_calls: ro.MaxToolCalls = 10,
             self_correct: ro.SelfCorrect = True, max_corrections: ro.MaxCorrections = 4,
             backoff_tokens: ro.BackoffTokens = 500, max_output_chars: ro.MaxOutputChars = 2048,
             system_prompt: ro.SystemPrompt = None, no_tools: ro.NoTools = False, concurrency: ro.Concurrency = 64,
             keep_ids: ro.KeepIds = True, timeout: ro.CellTimeout = 10.0, memory: ro.CellMemory = 1024,
             workers: ro.Workers = None, base_url: ro.BaseUrl = None, api_key: ro.ApiKey = None,
             search_corpus: ro.SearchCorpus = None, search_url: ro.SearchUrl = None) -> None:
        seen.update(locals())

    return app


def test_flags_parse_and_build(tiny_model_dir: Path, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "0", "contents": "\\"T\\"\\nsome text"}\n')
    r = CliRunner().invoke(_app(seen), ["--model", str(tiny_model_dir), "--backend", "scripted", "--protocol", "tapo",
                                        "-t", "1.0", "--top-k", "20", "--no-self-correct", "--backoff-tokens", "0",
                                        "--drop-ids", "--timeout", "3", "--search-corpus", str(corpus)])
    assert r.exit_code == 0, r.output
    model = seen.pop("model")
    be, tools, cfg = ro.build_rollout(model=model, seed=7, **seen)
    assert be.name == "scripted" and be.tokenizer is not None
    assert set(tools) == {"python", "search"} and tools["python"].timeout == 3.0  # type: ignore[attr-defined]
    assert (cfg.protocol, cfg.temperature, cfg.top_k, cfg.self_correct, cfg.backoff_tokens, cfg.keep_ids,
            cfg.seed) == ("tapo", 1.0, 20, False, 0, False, 7)
    assert cfg.tools == ("python", "search")


def test_no_tools_and_bad_values() -> None:
    assert ro.rollout_config(no_tools=True).tools == ()
    assert ro.rollout_config(protocol="tapo").tools == ("python",)
    with pytest.raises(UsageError):
        ro.rollout_config(top_p=0.0)
    with pytest.raises(UsageError):
        ro.build_rollout(model="x", protocol="nope")
