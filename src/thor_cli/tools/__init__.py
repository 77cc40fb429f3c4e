"""Tools the rollout engine calls: ``python`` (the sandbox) and ``search`` (BM25 or HTTP).

``build_tools(names, ...)`` returns ``{name: Tool}`` for ``RolloutEngine(tools=...)``; the engine
starts them on entry and closes them on exit. The interface is in base.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError
from thor_cli.tools.base import FunctionTool, Tool, ToolSession

TOOL_NAMES: tuple[str, ...] = ("python", "search")


def build_tools(names: tuple[str, ...] | list[str] = ("python",), *, timeout: float = 10.0, memory_mb: int = 1024,
                workers: int | None = None, search_corpus: str | Path | None = None,
                search_url: str | None = None, search_topk: int = 3, sandbox_pool: Any = None) -> dict[str, Tool]:
    """The named tools, configured. ``search`` needs ``search_corpus`` or ``search_url``."""
    tools: dict[str, Tool] = {}
    for name in names:
        if name == "python":
            from thor_cli.tools.python import PythonTool

            tools[name] = PythonTool(timeout=timeout, memory_mb=memory_mb, workers=workers, pool=sandbox_pool)
        elif name == "search":
            from thor_cli.tools.search import BM25SearchTool, HTTPSearchTool

            if search_url:
                tools[name] = HTTPSearchTool(search_url, topk=search_topk)
            elif search_corpus:
                tools[name] = BM25SearchTool(search_corpus, topk=search_topk)
            else:
                raise UsageError("the search tool needs a corpus or a retriever",
                                 "pass --search-corpus FILE.jsonl or --search-url http://HOST:PORT")
        else:
            raise UsageError(f"unknown tool {name!r}", f"choose from: {', '.join(TOOL_NAMES)}")
    return tools


__all__ = ["TOOL_NAMES", "FunctionTool", "Tool", "ToolSession", "build_tools"]
