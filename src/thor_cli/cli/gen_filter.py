"""``thor gen filter``: THOR's multi-stage filter for tool-integrated training data, on any
trajectory file (thor gen, thor eval, thor rl output). The filters live in ``gen/filters.py``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from thor_cli.cli.options import Config, Inputs, Limit, Output, ShardOpt, examples

_F = "Filters (in order; --no-NAME turns one off)"
_T = "Thresholds"
_IO = "Files"


def _opt(*names: str, help: str, panel: str = _T, **kw: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


def main(
    inputs: Inputs = None,
    output: Output = "-",
    rejected: Annotated[str | None, _opt("--rejected", panel=_IO, show_default=False, help=(
        "Also write the rejected records here, each with filter: {rejected_by, reason, detail}."))] = None,
    summary: Annotated[str | None, _opt("--summary", panel=_IO, show_default=False, help=(
        "Write the funnel (per filter: in, removed, out, % kept, reasons) and the config as JSON."))] = None,
    cot_eval: Annotated[str | None, _opt("--cot-eval", panel=_IO, show_default=False, help=(
        "A `thor eval --no-tools` output: drop problems (by id) that plain CoT solved in any sample "
        "(filter 9; off without it)."))] = None,
    correct: Annotated[bool, _opt("--correct/--no-correct", panel=_F, help=(
        "1. grade.correct; records without a grade are graded (gold in --gold-field)."))] = True,
    executed: Annotated[bool, _opt("--executed/--no-executed", panel=_F, help=(
        "2. Every code cell ran and succeeded (the protocol's rule: error, timeout, killed, memory, or a "
        "python cell that printed nothing, fail)."))] = True,
    boxed: Annotated[bool, _opt("--boxed/--no-boxed", panel=_F, help=(
        "3. A non-empty final answer after the last tool output: \\boxed{} (thor), <answer> (tapo)."))] = True,
    length: Annotated[bool, _opt("--length/--no-length", panel=_F, help=(
        "4. Completion length within bounds: tokens when the record has ids, else characters."))] = True,
    code_quality: Annotated[bool, _opt("--code-quality/--no-code-quality", panel=_F, help=(
        "5. At most ceil(fraction*n) of n cells are short, and some cell uses a library, a loop or a "
        "branch."))] = True,
    repetition: Annotated[bool, _opt("--repetition/--no-repetition", panel=_F, help=(
        "6. No character n-gram more than --max-repeats times in the model's text."))] = True,
    dollars: Annotated[bool, _opt("--dollars/--no-dollars", panel=_F, help=(
        "7. Even numbers of unescaped $ and $$ in the model's prose (code cells left out)."))] = True,
    language: Annotated[bool, _opt("--language/--no-language", panel=_F, help=(
        "8. At most --max-foreign of the model's letters outside --scripts."))] = True,
    one_per_problem: Annotated[bool, _opt("--one-per-problem/--no-one-per-problem", panel=_F, help=(
        "10. One sample per problem (id, else question): the fewest completion tokens (characters "
        "without ids), ties by record key. Reads every record before writing any."))] = True,
    single_call: Annotated[bool, _opt("--single-call/--no-single-call", panel=_F, help=(
        "11. Keep a sample with exactly one executed cell with probability --single-call-keep, drawn "
        "from a hash of --seed and the record (not its position)."))] = True,
    silent_cells_fail: Annotated[bool, _opt("--silent-cells-fail/--silent-cells-ok", help=(
        "Whether a python cell that printed nothing counts as failed (filter 2)."))] = True,
    count_retries: Annotated[bool, _opt("--count-retries", help=(
        "Filter 2 also rejects samples with self-corrections (cells dropped from the text)."))] = False,
    min_tokens: Annotated[int, _opt("--min-tokens", help="Filter 4, records with ids.")] = 50,
    max_tokens: Annotated[int, _opt("--max-tokens", help="Filter 4, records with ids; 0: no bound.")] = 0,
    min_chars: Annotated[int, _opt("--min-chars", help="Filter 4, records without ids.")] = 200,
    max_chars: Annotated[int, _opt("--max-chars", help="Filter 4, records without ids; 0: no bound.")] = 0,
    short_cell_lines: Annotated[int, _opt("--short-cell-lines", help=(
        "Filter 5: a cell with at most this many non-blank, non-comment lines (or that does not parse) "
        "is short."))] = 5,
    max_short_fraction: Annotated[float, _opt("--max-short-fraction", help=(
        "Filter 5: reject when more than ceil(this * n) of the n cells are short; 1 turns the rule off."))] = 0.4,
    lib_or_flow: Annotated[bool, _opt("--lib-or-flow/--no-lib-or-flow", help=(
        "Filter 5: require a cell that imports or calls a library (sympy.solve, np.x, math.x) or has a loop, "
        "branch or comprehension."))] = True,
    ngram: Annotated[int, _opt("--ngram", help="Filter 6: n-gram length in characters.")] = 20,
    max_repeats: Annotated[int, _opt("--max-repeats", help="Filter 6: most times an n-gram may occur.")] = 20,
    scripts: Annotated[str, _opt("--scripts", help=(
        "Filter 8: allowed scripts, comma-separated (latin, greek, cyrillic, cjk, hiragana, ...); Greek is "
        "in the default for math's letters."))] = "latin,greek",
    max_foreign: Annotated[float, _opt("--max-foreign", help=(
        "Filter 8: largest share of letters outside --scripts."))] = 0.05,
    single_call_keep: Annotated[float, _opt("--single-call-keep", help=(
        "Filter 11: keep probability; 1 keeps all."))] = 0.5,
    seed: Annotated[int, _opt("--seed", help="Filter 11's draw.")] = 0,
    gold_field: Annotated[str, _opt("--gold-field", help="Filter 1: field holding the gold answer.")] = "answer",
    grade_timeout: Annotated[float, _opt("--grade-timeout", help="Filter 1: seconds per answer check.")] = 5.0,
    skip_malformed: Annotated[bool, typer.Option("--skip-malformed", help=(
        "Count records that cannot be read (no trajectory, wrong types) as rejected 'malformed' instead of "
        "stopping at the first with its file, line and field."))] = False,
    shard: ShardOpt = None,
    limit: Limit = None,
    config: Config = None,
) -> None:
    """Filter tool-integrated trajectories into training data with THOR's multi-stage filter.

    Reads records with a `trajectory` (thor gen, eval or rl output) and writes those that pass every
    enabled filter, in this order: 1 correct, 2 executed, 3 boxed, 4 length, 5 code_quality,
    6 repetition, 7 dollars, 8 language, 9 cot_solved (--cot-eval), 10 one_per_problem,
    11 single_call. A kept record gets `filter: {passed: [...]}`. A funnel table (in, removed, out,
    % kept per filter) goes to stderr and, with --summary, to a JSON file.

    With one_per_problem on (the default) the command reads every record before it writes any;
    it holds only the best sample of each problem so far. --shard splits by problem.
    """
    from thor_cli.gen.filter_run import run_filter
    from thor_cli.gen.filters import FilterConfig
    from thor_cli.log import log

    cfg = FilterConfig(
        correct=correct, executed=executed, silent_cells_fail=silent_cells_fail, count_retries=count_retries,
        boxed=boxed, length=length, min_tokens=min_tokens, max_tokens=max_tokens, min_chars=min_chars,
        max_chars=max_chars, code_quality=code_quality, short_cell_lines=short_cell_lines,
        max_short_fraction=max_short_fraction, lib_or_flow=lib_or_flow, repetition=repetition, ngram=ngram,
        max_repeats=max_repeats, dollars=dollars, language=language, scripts=scripts, max_foreign=max_foreign,
        one_per_problem=one_per_problem, single_call=single_call, single_call_keep=single_call_keep, seed=seed,
    )
    funnel = run_filter(inputs, output, cfg, cot_eval=cot_eval, rejected=rejected, summary=summary, shard=shard,
                        limit=limit, skip_malformed=skip_malformed,
                        grade_options={"gold_field": gold_field, "timeout": grade_timeout})
    if log.isEnabledFor(20):  # INFO: --quiet leaves the table out
        print_funnel(funnel.rows())


def print_funnel(rows: list[dict[str, Any]]) -> None:
    """The funnel as a table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="thor gen filter", title_justify="left")
    for col in ("filter", "in", "removed", "out", "% kept", "top reasons"):
        table.add_column(col, justify="left" if col in ("filter", "top reasons") else "right")
    for r in rows:
        kept = "off" if not r["enabled"] else "-" if r["kept_pct"] is None else f"{r['kept_pct']:.1f}"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1])[:3])
        table.add_row(r["filter"], str(r["in"]), str(r["removed"]), str(r["out"]), kept, reasons)
    Console(stderr=True).print(table)


main.epilog = examples(  # type: ignore[attr-defined]
    "thor gen filter runs/gen.jsonl -o runs/sft.jsonl --summary runs/filter.json",
    "thor eval math500 --no-tools -o runs/cot.jsonl && thor gen filter runs/gen.jsonl --cot-eval runs/cot.jsonl",
    "thor gen filter runs/gen.jsonl --no-one-per-problem --rejected runs/rejected.jsonl | thor show",
    "thor gen filter runs/eval.jsonl --no-language --max-short-fraction 0.6 --min-tokens 200",
)
