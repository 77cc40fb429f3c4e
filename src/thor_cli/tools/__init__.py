"""Tools the rollout engine calls: ``python`` (the sandbox) and ``search`` (BM25 or HTTP).

``build_tools(names, ...)`` returns ``{name: Tool}`` for ``RolloutEngine(tools=...)``; the engine
starts them on entry and closes them on exit. The interface is in base.py; ``TOOLS`` maps each
name to the function that builds it from ``ToolOptions`` (a tool's module is imported only when
it is built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from thor_cli.errors import UsageError
from thor_cli.tools.base import FunctionTool, Tool, ToolSession

if TYPE_CHECKING:
    from thor_cli.sandbox import Sandbox


@dataclass
class ToolOptions:
    """What the tools are built from (each reads the fields it needs)."""

    timeout: float = 10.0
    memory_mb: int = 1024
    workers: int | None = None
    search_corpus: str | Path | None = None
    search_url: str | None = None
    search_topk: int = 3
    sandbox_pool: Sandbox | None = None


def _python(o: ToolOptions) -> Tool:
    from thor_cli.tools.python import PythonTool

    return PythonTool(timeout=o.timeout, memory_mb=o.memory_mb, workers=o.workers, pool=o.sandbox_pool)


def _search(o: ToolOptions) -> Tool:
    from thor_cli.tools.search import BM25SearchTool, HTTPSearchTool

    if o.search_url:
        return HTTPSearchTool(o.search_url, topk=o.search_topk)
    if o.search_corpus:
        return BM25SearchTool(o.search_corpus, topk=o.search_topk)
    raise UsageError("the search tool needs a corpus or a retriever",
                     "pass --search-corpus FILE.jsonl or --search-url http://HOST:PORT")


TOOLS: dict[str, Callable[[ToolOptions], Tool]] = {"python": _python, "search": _search}
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)


def build_tools(names: tuple[str, ...] | list[str] = ("python",), *, timeout: float = 10.0, memory_mb: int = 1024,
                workers: int | None = None, search_corpus: str | Path | None = None,
                search_url: str | None = None, search_topk: int = 3,
                sandbox_pool: Sandbox | None = None) -> dict[str, Tool]:
    """The named tools, configured. ``search`` needs ``search_corpus`` or ``search_url``."""
    opts = ToolOptions(timeout=timeout, memory_mb=memory_mb, workers=workers, search_corpus=search_corpus,
                       search_url=search_url, search_topk=search_topk, sandbox_pool=sandbox_pool)
    tools: dict[str, Tool] = {}
    for name in names:
        make = TOOLS.get(name)
        if make is None:
            raise UsageError(f"unknown tool {name!r}", f"choose from: {', '.join(TOOL_NAMES)}")
        tools[name] = make(opts)
    return tools


__all__ = ["TOOLS", "TOOL_NAMES", "FunctionTool", "Tool", "ToolOptions", "ToolSession", "build_tools"]
