"""The search tool: BM25 over a small corpus built here, and the Search-R1 HTTP client against a
real local server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from thor_cli.errors import InputError, SandboxError, UsageError
from thor_cli.tools import build_tools
from thor_cli.tools.search import BM25SearchTool, HTTPSearchTool

DOCS = [
    {"id": "0", "contents": '"Paris"\nParis is the capital and most populous city of France.'},
    {"id": "1", "contents": '"Berlin"\nBerlin is the capital of Germany and its largest city.'},
    {"id": "2", "title": "Wilhelm Röntgen", "text": "Röntgen received the first Nobel Prize in Physics in 1901."},
    {"id": "3", "contents": '"Python"\nPython is a programming language created by Guido van Rossum.'},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    p = tmp_path / "corpus.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return p


def test_bm25_finds_the_right_passage(corpus: Path) -> None:
    async def go() -> tuple[Any, Any, Any]:
        tool = build_tools(("search",), search_corpus=corpus, search_topk=2)["search"]
        await tool.start()
        sess = await tool.session()
        return (await sess.run("capital of Germany"), await sess.run("first nobel prize physics"),
                await sess.run("zzzz qqqq"))

    germany, nobel, nothing = asyncio.run(go())
    assert germany.status == "ok" and germany.stdout.startswith("Doc 1(Title: Berlin) Berlin is the capital")
    assert "Röntgen" in nobel.stdout.splitlines()[0]
    assert nothing.stdout == "No results."


def test_bm25_on_the_shared_sample_corpus() -> None:
    path = Path("/work/shared/data/search/wiki_sample_1k.jsonl")
    if not path.is_file():
        pytest.skip("shared search sample not present")
    tool = BM25SearchTool(path, topk=3)
    asyncio.run(tool.start())
    assert len(tool.docs) == 1000 and len(tool.query("Genentech lobbyist")) >= 1


def test_bad_corpus_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1, "contents": "x"}\n{"id": 2}\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        asyncio.run(BM25SearchTool(p).start())
    with pytest.raises(UsageError):
        build_tools(("search",))


def test_http_retriever_against_a_local_server() -> None:
    from aiohttp import web

    seen: list[Any] = []
    flaky = {"n": 0}

    async def retrieve(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        flaky["n"] += 1
        if flaky["n"] == 1:
            return web.Response(status=503)  # the client retries
        docs = [{"document": d, "score": 1.0} for d in DOCS[: body["topk"]]]
        return web.json_response({"result": [docs]})

    async def go() -> tuple[Any, Any]:
        app = web.Application()
        app.router.add_post("/retrieve", retrieve)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        tool = HTTPSearchTool(f"http://127.0.0.1:{port}", topk=2, retries=2)
        try:
            res = await (await tool.session()).run("capital")
            dead = HTTPSearchTool("http://127.0.0.1:9", retries=0, timeout=2)
            try:
                with pytest.raises(SandboxError):
                    await dead.search("x")
            finally:
                await dead.close()
            return res, seen
        finally:
            await tool.close()
            await runner.cleanup()

    res, seen = asyncio.run(go())
    assert res.status == "ok" and res.stdout.splitlines() == [
        "Doc 1(Title: Paris) Paris is the capital and most populous city of France.",
        "Doc 2(Title: Berlin) Berlin is the capital of Germany and its largest city."]
    assert seen[-1] == {"queries": ["capital"], "topk": 2, "return_scores": True} and len(seen) == 2
