"""The evaluation summary as a rich table (stderr) — one row per benchmark."""

from __future__ import annotations

from typing import Any

from rich.table import Table

COLUMNS = [  # (header, metric key, format)
    ("problems", "problems", "d"), ("samples", "samples", "d"), ("avg@k", "avg@k", "%"),
    ("pass@k", "pass@k", "%"), ("maj@k", "maj@k", "%"), ("best@k cells", "best@k_cells", "%"),
    ("tool calls", "tool_calls_mean", ".2f"), ("cell ok", "cell_success_rate", "%"),
    ("corrections", "corrections_mean", ".2f"), ("tokens", "tokens_mean", ".0f"),
    ("no answer", "no_answer", "d"), ("errors", "errors", "d"), ("wall s", "wall_s", ".1f"),
]


def format_metric(value: Any, fmt: str) -> str:
    """A metric as a table cell: "-" when absent, "%" as a percentage, "d" as an integer."""
    if value is None:
        return "-"
    if fmt == "%":
        return f"{100 * float(value):.1f}"
    if fmt == "d":
        return str(int(value))
    return format(float(value), fmt)


def summary_table(summary: dict[str, Any]) -> Table:
    ks = {m["k"] for m in summary["benchmarks"].values()}
    k = ks.pop() if len(ks) == 1 else "k"
    table = Table(title=f"thor eval (k = {k}; accuracies in %)", title_justify="left")
    table.add_column("benchmark", justify="left")
    for head, _, _ in COLUMNS:
        table.add_column(head.replace("@k", f"@{k}"), justify="right")
    for name, m in summary["benchmarks"].items():
        table.add_row(name, *(format_metric(m.get(key), fmt) for _, key, fmt in COLUMNS))
    if summary.get("macro_avg@k") is not None:
        table.caption = f"macro average avg@{k}: {100 * summary['macro_avg@k']:.1f}"
    return table


def print_summary(summary: dict[str, Any]) -> None:
    """The table on stderr (plain text when stderr is not a terminal)."""
    from rich.console import Console

    Console(stderr=True, width=160, highlight=False).print(summary_table(summary))
