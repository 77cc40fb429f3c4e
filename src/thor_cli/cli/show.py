"""``thor show``: render trajectories for people, or their statistics."""

from __future__ import annotations

from typing import Annotated

import typer

from thor_cli.cli.options import Inputs, Limit, examples


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
    pager: Annotated[bool | None, typer.Option("--pager/--no-pager", help="Page the output (default: when "
                                               "stdout is a terminal).", show_default=False)] = None,
    color: Annotated[bool | None, typer.Option("--color/--no-color", help="Colours and highlighting "
                                               "(default: when stdout is a terminal).", show_default=False)] = None,
    limit: Limit = None,
) -> None:
    """Show trajectories: problem, reasoning, code cells, outputs, failed cells and self-corrections,
    final answer against gold, and whether it was right.

    Reads records from files or stdin (e.g. the output of `thor eval` or `thor grade`). Pages on a
    terminal; writes plain text when piped.
    """
    import os
    from collections.abc import Iterator
    from itertools import islice
    from typing import Any

    from thor_cli.log import log
    from thor_cli.records.jsonl import iter_records
    from thor_cli.show import Filters, show

    os.environ.setdefault("LESS", "-R")  # keep colours in less
    filters = Filters(ids=ids or [], wrong=wrong, failed_cells=failed_cells, benchmarks=benchmark or [])
    records: Iterator[dict[str, Any]] = (r.data for r in iter_records(inputs or ["-"]))
    if limit is not None:
        records = islice(records, limit)
    n = show(records, filters, stats=stats, pager=pager, color=color)
    if n == 0:
        log.warning("show: no records matched")


main.epilog = examples(  # type: ignore[attr-defined]
    "thor eval --model smollm2-135m --benchmark gsm8k --limit 5 | thor show",
    "thor show runs/eval.jsonl --wrong --failed-cells | less -R",
    "thor show runs/eval.jsonl --stats",
    "thor show runs/eval.jsonl --id gsm8k/test/3 | head -40",
)
