"""The ``search`` tool (TAPO's): offline BM25 over a local JSONL corpus, or an HTTP retriever.

Corpus lines are ``{"id", "contents"}`` (Search-R1/FlashRAG style: the first line of contents is
the title) or ``{"id", "title", "text"}``. The index is built in memory with bm25s when the tool
starts (1,000 passages: well under a second).

The HTTP client speaks the Search-R1 retriever API: ``POST {url}/retrieve`` with
``{"queries": [q], "topk": k, "return_scores": true}`` answering
``{"result": [[{"document": {"id", "contents"}, "score": s}, ...]]}`` (a list of documents
without scores is accepted too). Retries with backoff on connection errors, 429 and 5xx.

Results are formatted like Search-R1: ``Doc 1(Title: t) text`` one per line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from thor_cli.errors import InputError, SandboxError, UsageError
from thor_cli.records.jsonl import iter_records
from thor_cli.records.schema import ExecResult


def _title_text(doc: dict[str, Any]) -> tuple[str, str]:
    if "contents" in doc:
        contents = str(doc["contents"])
        title, _, text = contents.partition("\n")
        return title.strip().strip('"'), text.strip()
    return str(doc.get("title", "")).strip(), str(doc.get("text", doc.get("contents", ""))).strip()


def format_docs(docs: list[dict[str, Any]]) -> str:
    """Search-R1's passage format."""
    lines = []
    for i, doc in enumerate(docs, 1):
        title, text = _title_text(doc)
        lines.append(f"Doc {i}(Title: {title}) {text}")
    return "\n".join(lines)


def load_corpus(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--search-corpus {path}: file not found", "pass a JSONL file of {\"id\", \"contents\"}")
    docs = []
    for rec in iter_records([str(p)]):  # names file and line of a bad one
        if not ("contents" in rec.data or "text" in rec.data):
            raise InputError('a passage needs "contents" or "text"', path=rec.path, line=rec.line, field="contents")
        docs.append(rec.data)
    if not docs:
        raise InputError("the corpus is empty", path=str(p))
    return docs


class _Session:
    def __init__(self, tool: Any) -> None:
        self.tool = tool

    async def run(self, call: str) -> ExecResult:
        return await self.tool.search(call)  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None


class BM25SearchTool:
    """BM25 (bm25s, Lucene variant) over an in-memory corpus."""

    name = "search"
    stateful = False

    def __init__(self, corpus: str | Path | list[dict[str, Any]], *, topk: int = 3) -> None:
        self.corpus_spec = corpus
        self.topk = topk
        self.docs: list[dict[str, Any]] = []
        self._index: Any = None

    async def start(self) -> None:
        if self._index is not None:
            return
        import bm25s

        self.docs = load_corpus(self.corpus_spec) if not isinstance(self.corpus_spec, list) else self.corpus_spec
        texts = [" ".join(_title_text(d)) for d in self.docs]
        index = bm25s.BM25()
        index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self._index = index

    def query(self, q: str) -> list[dict[str, Any]]:
        """The top-k passages for ``q`` (best first); empty when no query term is in the corpus."""
        import bm25s

        tokens = bm25s.tokenize([q], stopwords="en", return_ids=False, show_progress=False)
        vocab = self._index.vocab_dict
        tokens = [[t for t in tokens[0] if t in vocab]]
        if not tokens[0]:
            return []
        k = min(self.topk, len(self.docs))
        idx, scores = self._index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [self.docs[int(i)] for i, s in zip(idx[0], scores[0], strict=True) if s > 0]

    async def search(self, q: str) -> ExecResult:
        if self._index is None:
            await self.start()
        q = q.strip()
        if not q:
            return ExecResult(status="error", error="empty search query")
        docs = self.query(q)
        return ExecResult(status="ok", stdout=format_docs(docs) if docs else "No results.")

    async def session(self) -> _Session:
        return _Session(self)

    async def close(self) -> None:
        return None


class HTTPSearchTool:
    """A client of a Search-R1-style ``/retrieve`` server."""

    name = "search"
    stateful = False

    def __init__(self, url: str, *, topk: int = 3, timeout: float = 30.0, retries: int = 3,
                 concurrency: int = 16) -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/retrieve"):
            self.url += "/retrieve"
        self.topk = topk
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self._http: Any = None
        self._sem: asyncio.Semaphore | None = None

    async def start(self) -> None:
        if self._http is None:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._sem = asyncio.Semaphore(self.concurrency)

    async def _post(self, q: str) -> Any:
        import aiohttp

        payload = {"queries": [q], "topk": self.topk, "return_scores": True}
        delay = 0.5
        last = ""
        for attempt in range(self.retries + 1):
            try:
                assert self._sem is not None
                async with self._sem, self._http.post(self.url, json=payload) as resp:
                    if resp.status == 429 or resp.status >= 500:
                        last = f"HTTP {resp.status}"
                    elif resp.status >= 400:
                        body = (await resp.text())[:200]
                        raise SandboxError(f"search server {self.url} answered HTTP {resp.status}: {body}",
                                           "check --search-url")
                    else:
                        return await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        raise SandboxError(f"search server {self.url} failed after {self.retries + 1} tries ({last})",
                           "check that the retriever is running (--search-url)")

    async def search(self, q: str) -> ExecResult:
        await self.start()
        q = q.strip()
        if not q:
            return ExecResult(status="error", error="empty search query")
        data = await self._post(q)
        try:
            hits = data["result"][0]
            docs = [h["document"] if isinstance(h, dict) and "document" in h else h for h in hits]
        except (KeyError, IndexError, TypeError):
            raise SandboxError(f"search server {self.url} gave an unexpected answer: {str(data)[:200]}",
                               "it must follow the Search-R1 /retrieve API") from None
        return ExecResult(status="ok", stdout=format_docs(docs) if docs else "No results.")

    async def session(self) -> _Session:
        return _Session(self)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
