"""The report as one self-contained HTML file: the Jinja2 template, inlined assets, data as JSON.

Everything the page needs is in the file (vega, vega-lite, vega-embed, highlight.js, styles, the
data), so it opens from disk with no server and no network. The browser's rows go in one
``<script type="application/json">`` block that ``report.js`` parses and pages through; summary
tables are rendered here (plain HTML, readable without JavaScript).
"""

from __future__ import annotations

import datetime as _dt
from functools import cache
from importlib import resources
from typing import Any

import orjson

from thor_cli import __version__
from thor_cli.evaluate.report import COLUMNS, format_metric
from thor_cli.records.jsonl import write_atomic
from thor_cli.show.html.assemble import Report, summary_tables
from thor_cli.show.html.charts import all_charts

SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "highlight.min.js", "report.js")
STYLES = ("highlight-github.min.css", "report.css")
_JSON_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))


def json_script(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    raw = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    for old, new in _JSON_ESCAPES:  # outside strings JSON has none of these; inside, \\u escapes mean the same
        raw = raw.replace(old, new)
    return raw.decode()


@cache
def _asset(name: str) -> str:
    return (resources.files("thor_cli.show.html") / "assets" / name).read_text(encoding="utf-8")


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("thor_cli.show.html", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["metric"] = lambda v, fmt: format_metric(v, fmt)
    return env


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def render_html(rep: Report, *, title: str = "thor report", page_size: int = 50) -> str:
    """The whole page as a string."""
    import markupsafe

    bench = rep.benchmarks
    pivot = [{"run": r.label, "cells": [_pct(((r.summary or {}).get("benchmarks") or {}).get(b, {}).get("avg@k"))
                                        for b in bench],
              "macro": _pct((r.summary or {}).get("macro_avg@k")), "records": r.records,
              "from": r.summary_from} for r in rep.runs if r.summary]
    data = {"rows": rep.rows, "runs": [r.label for r in rep.runs if r.records], "benchmarks": sorted(
        {row["b"] for row in rep.rows}), "pageSize": page_size, "matched": rep.matched}
    ctx = {
        "title": title, "version": __version__,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs": [{"path": i.path, "label": i.label, "kind": i.kind} for i in rep.inputs],
        "columns": COLUMNS, "tables": summary_tables(rep), "benchmarks": bench, "pivot": pivot,
        "funnels": rep.funnels, "metrics_last": {k: v[-1] for k, v in rep.metrics.items() if v},
        "charts": [{**c, "json": markupsafe.Markup(json_script(c["spec"]))} for c in all_charts(rep)],
        "data_json": markupsafe.Markup(json_script(data)), "n_rows": len(rep.rows), "matched": rep.matched,
        "scripts": [markupsafe.Markup(_asset(s)) for s in SCRIPTS],
        "styles": [markupsafe.Markup(_asset(s)) for s in STYLES],
    }
    return str(_env().get_template("report.html.j2").render(**ctx))


def write_report(rep: Report, path: str, **kw: Any) -> int:
    """Render and write atomically (temp name + rename: never a half-written report); returns bytes."""
    body = render_html(rep, **kw).encode("utf-8")
    write_atomic(path, body)
    return len(body)
