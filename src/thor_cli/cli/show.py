"""``thor show``: render trajectories for people, their statistics, or an HTML report (``--html``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from thor_cli.cli.options import examples

Inputs = Annotated[
    list[str] | None,
    typer.Argument(help="JSONL input files, read in turn; '-' or none reads stdin. With --html: [LABEL=]PATH "
                   "of trajectory files, metrics.jsonl files (or their run folders), eval summary and "
                   "filter summary JSONs, recognised by their content.", show_default=False),
]
Limit = Annotated[int | None, typer.Option("--limit", help="Read at most N input records (with --html: put at most "
                                          "N trajectories in the browser).", show_default=False)]


def main(
    inputs: Inputs = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Show only this record id (repeatable).",
                                                  show_default=False)] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="Only records graded wrong.")] = False,
    failed_cells: Annotated[bool, typer.Option("--failed-cells", help="Only records with a failed cell "
                                               "(self-corrections included).")] = False,
    benchmark: Annotated[list[str] | None, typer.Option("--benchmark", "-b", help="Only this benchmark "
                                                        "(the record's source; repeatable).",
                                                        show_default=False)] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Counts, accuracy, tool-call histogram and cell "
                                        "error types instead of the records (reads everything).")] = False,
    html: Annotated[str | None, typer.Option("--html", help="Write a self-contained HTML report to this file: "
                                             "summary tables per benchmark with runs side by side, charts, a "
                                             "trajectory browser. The filters and --limit select the browser's "
                                             "trajectories; the summaries read every record.",
                                             show_default=False)] = None,
    title: Annotated[str, typer.Option("--title", help="The HTML report's title.")] = "thor report",
    pager: Annotated[bool | None, typer.Option("--pager/--no-pager", help="Page the output (default: when "
                                               "stdout is a terminal).", show_default=False)] = None,
    color: Annotated[bool | None, typer.Option("--color/--no-color", help="Colours and highlighting "
                                               "(default: when stdout is a terminal).", show_default=False)] = None,
    limit: Limit = None,
) -> None:
    """Show trajectories: problem, reasoning, code cells, outputs, failed cells and self-corrections,
    final answer against gold, and whether it was right.

    Reads records from files or stdin (e.g. the output of `thor eval` or `thor grade`). Pages on a
    terminal; writes plain text when piped. With --html, writes one HTML file (no server or network
    needed to open it) from eval, gen, grade outputs, sft/rl metrics.jsonl and filter summaries; label
    runs with LABEL=PATH (default: the file name; a metrics.jsonl is named by its folder).
    """
    import os
    from collections.abc import Iterator
    from itertools import islice

    from thor_cli.log import log
    from thor_cli.records.jsonl import iter_records
    from thor_cli.show import Filters, show

    filters = Filters(ids=ids or [], wrong=wrong, failed_cells=failed_cells, benchmarks=benchmark or [])
    if html is not None:
        _html(html, inputs or [], filters, limit, title, stats=stats)
        return
    os.environ.setdefault("LESS", "-R")  # keep colours in less
    records: Iterator[dict[str, Any]] = (r.data for r in iter_records(inputs or ["-"]))
    if limit is not None:
        records = islice(records, limit)
    n = show(records, filters, stats=stats, pager=pager, color=color)
    if n == 0:
        log.warning("show: no records matched")


def _html(output: str, inputs: list[str], filters: Any, limit: int | None, title: str, *, stats: bool) -> None:
    import os
    import time

    from thor_cli.errors import UsageError
    from thor_cli.log import log
    from thor_cli.show.html import build_report

    if stats:
        raise UsageError("--stats and --html do not go together", "the report has the statistics; drop --stats")
    if not inputs or "-" in inputs:
        raise UsageError("--html reads files, not stdin", "pass the files: thor show --html OUT.html FILE...")
    t0 = time.monotonic()
    rep = build_report(inputs, output, filters=filters, limit=limit, title=title)
    size = os.path.getsize(output)
    log.info("show: wrote %s (%.1f MB) in %.1fs: runs %d, metrics files %d, funnels %d, trajectories %d%s",
             output, size / 1e6, time.monotonic() - t0, len(rep.runs), len(rep.metrics), len(rep.funnels),
             len(rep.rows), f" of {rep.matched} matched (--limit)" if rep.matched > len(rep.rows) else "")


main.epilog = examples(  # type: ignore[attr-defined]
    "thor eval --model smollm2-135m --benchmark gsm8k --limit 5 | thor show",
    "thor show runs/eval.jsonl --wrong --failed-cells | less -R",
    "thor show runs/eval.jsonl --stats",
    "thor show runs/eval.jsonl --id gsm8k/test/3 | head -40",
    "thor show --html report.html runs/eval.jsonl",
    "thor show --html runs/demo/report.html base=runs/demo/eval-base-tools.jsonl "
    "sft=runs/demo/eval-sft-tools.jsonl rl=runs/demo/eval-rl-tools.jsonl runs/demo/gen.jsonl "
    "runs/demo/rl/metrics.jsonl runs/demo/sft/metrics.jsonl runs/demo/filter.summary.json",
    "thor show --html report.html runs/demo/eval-*.jsonl runs/demo/eval-*.summary.json runs/demo/rl "
    "--wrong --limit 2000   # a summary JSON joins the records of the same name",
)
