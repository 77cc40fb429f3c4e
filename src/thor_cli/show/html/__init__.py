"""``thor show --html``: one self-contained HTML report from eval, gen and training outputs.

    from thor_cli.show.html import build_report
    build_report(["base=runs/demo/eval-base-tools.jsonl", "rl=runs/demo/rl"], "report.html")

Modules: ``inputs`` (what each input is, by content; run labels), ``assemble`` (summaries with
``evaluate.metrics.summarize``, stats, metrics, funnels, the browser's rows), ``rows`` (one
trajectory as a browser row, diffs of self-corrections and critic rewrites), ``charts``
(Vega-Lite specs), ``build`` (Jinja2 template + inlined assets, atomic write). ``assets/`` holds
the vendored vega / vega-lite / vega-embed / highlight.js builds (``shell/vendor-html-assets.sh``)
and the page's own ``report.js`` / ``report.css``.
"""

from __future__ import annotations

from thor_cli.show.filters import Filters
from thor_cli.show.html.assemble import Report, assemble
from thor_cli.show.html.build import render_html, write_report
from thor_cli.show.html.inputs import Input, resolve_inputs


def build_report(args: list[str], output: str, *, filters: Filters | None = None, limit: int | None = None,
                 title: str = "thor report") -> Report:
    """Read ``[LABEL=]PATH`` inputs and write the report to ``output``; returns what was read."""
    rep = assemble(resolve_inputs(args), filters, limit)
    write_report(rep, output, title=title)
    return rep


__all__ = ["Input", "Report", "assemble", "build_report", "render_html", "resolve_inputs", "write_report"]
