"""``thor data``: the benchmarks shipped inside thor, and conversion of other data to problem records."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from thor_cli.cli.options import Config, Inputs, Limit, Output, examples
from thor_cli.log import log
from thor_cli.records import OutputSink

app = typer.Typer(
    help="Problem sets: list and get the benchmarks shipped with thor, convert other data to problem records.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool = False) -> None:
    """Rows on stdout: JSONL with ``as_json``, a rich table on a terminal, aligned plain text otherwise."""
    if as_json:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, box=None, header_style="bold")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
        return
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def write_records(records: Iterable[dict[str, Any]], output: str) -> int:
    """Stream records to stdout or to ``output`` (written as NAME.part, renamed when complete)."""
    with OutputSink(output) as sink:
        sink.write_many(records)
    return sink.written


@app.command("list", epilog=examples("thor data list", "thor data list --json | grep code"))
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per benchmark instead of a table.")] = False,
) -> None:
    """List the benchmarks shipped with thor: name, rows, task, licence."""
    from thor_cli.data import BENCHMARKS

    rows = [{"name": n, "rows": b.rows, "task": b.task, "licence": b.licence, "description": b.description}
            for n, b in BENCHMARKS.items()]
    print_table(rows, ["name", "rows", "task", "licence"], as_json=as_json)


@app.command("get", epilog=examples("thor data get math500 --limit 5 | head -n 2",
                                     "thor data get humaneval -o humaneval.jsonl",
                                     "thor data get gsm8k | wc -l"))
def get(
    name: Annotated[str, typer.Argument(help="Benchmark name (see thor data list).", show_default=False)],
    limit: Limit = None,
    output: Output = "-",
) -> None:
    """Write a shipped benchmark's problem records as JSONL (id, question, answer, source, task, ...)."""
    from thor_cli.data import load_benchmark

    n = write_records(load_benchmark(name, limit), output)
    log.debug("data get %s: %d records", name, n)


@app.command("convert", epilog=examples(
    "thor data convert train.jsonl --limit 3 | head -n 1",
    "thor data convert math.parquet --question-field problem --answer-field answer --source math -o math.jsonl",
    "cat rows.jsonl | thor data convert --map question=prompt --map answer=target | head -n 1",
    "thor data convert ./saved_dataset --split train --skip-unlabelled -o train.jsonl",
))
def convert(
    inputs: Inputs = None,
    question_field: Annotated[str | None, typer.Option("--question-field", help="Field holding the question "
                              "(default: the first of question, problem, prompt, query, instruction, text).",
                              show_default=False)] = None,
    answer_field: Annotated[str | None, typer.Option("--answer-field", help="Field holding the gold answer "
                            "(default: the first of final_answer, answer, gold, target, label).",
                            show_default=False)] = None,
    id_field: Annotated[str | None, typer.Option("--id-field", help="Field holding a stable id (default: id; "
                        "else ids are SOURCE/N).", show_default=False)] = None,
    source: Annotated[str | None, typer.Option("--source", help="Value of 'source' (default: the input's file "
                      "name without extension).", show_default=False)] = None,
    task: Annotated[str | None, typer.Option("--task", help="math, code or qa (default: the row's 'task', else math).",
                    show_default=False)] = None,
    maps: Annotated[list[str] | None, typer.Option("--map", help="NEW=OLD: rename field OLD to NEW (repeatable), "
                    "e.g. --map tests=test.", show_default=False)] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split of a datasets folder or hub dataset.",
                     show_default=False)] = None,
    unlabelled: Annotated[bool, typer.Option("--unlabelled", help="Keep rows without an answer (no 'answer' field).")] = False,
    skip_unlabelled: Annotated[bool, typer.Option("--skip-unlabelled", help="Drop rows without an answer "
                               "(counted on stderr).")] = False,
    limit: Limit = None,
    output: Output = "-",
    config: Config = None,
) -> None:
    """Convert JSONL, JSON, parquet, a datasets save_to_disk folder, or a hub dataset (online) to problem records.

    Other fields pass through. Errors name the file, the line (or row) and the field.
    """
    from thor_cli.data.convert import Converter, convert, parse_maps
    from thor_cli.errors import UsageError

    if unlabelled and skip_unlabelled:
        raise UsageError("--unlabelled and --skip-unlabelled exclude each other", "pick one")
    conv = Converter(question_field=question_field, answer_field=answer_field, id_field=id_field,
                     source=source, task=task, maps=parse_maps(maps or []),
                     unlabelled="keep" if unlabelled else "skip" if skip_unlabelled else "error")
    t0 = time.monotonic()
    n = write_records(convert(inputs or ["-"], conv, split=split, limit=limit), output)
    if n == 0 and not conv.skipped:
        log.warning("convert: no input records")
    extra = f", {conv.skipped} rows without an answer skipped" if conv.skipped else ""
    log.info("convert: %d problems written%s in %.1fs", n, extra, time.monotonic() - t0)


@app.command("merge", epilog=examples(
    "thor grade preds.jsonl --shard 0/2 -o graded.0.jsonl; thor grade preds.jsonl --shard 1/2 -o graded.1.jsonl",
    "thor data merge graded.0.jsonl graded.1.jsonl -o graded.jsonl",
    "thor data merge runs/exec.*.jsonl --strict | thor show --stats",
    "thor data merge old.jsonl redo.jsonl --stage exec -o exec.jsonl",
))
def merge(
    inputs: Annotated[list[str], typer.Argument(help="Output files of the shards of one stage run "
                      "(each with its FILE.manifest.json).", show_default=False)],
    output: Output = "-",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a shard is missing or the inputs do not fit "
                      "together (different configs, stages or shard counts, no manifest).")] = False,
    stage: Annotated[str | None, typer.Option("--stage", help="Stage whose keys[STAGE] identify a record "
                     "(default: the stage named in the manifests).", show_default=False)] = None,
) -> None:
    """Merge the outputs of a sharded run (--shard i/n) into one file with one record per key.

    A key seen more than once keeps one record: a successful one over one with an `error`, else
    the first; the duplicates dropped are counted on stderr. Shards that have no file (by the
    manifests' "i/n") and inputs made with different configs are reported on stderr (errors with
    --strict). Records come out file by file in the order given. The output gets a manifest with
    the shards' config, so a later --resume into it works like one into an unsharded run.
    """
    from thor_cli.cli.stream import write_manifest
    from thor_cli.data.merge import merged_config, merged_records, plan_merge
    from thor_cli.errors import UsageError

    if output != "-" and any(Path(output).resolve() == Path(p).resolve() for p in inputs if p != "-"):
        raise UsageError(f"the output {output} is also an input", "write the merged records to a new -o file")
    t0 = time.monotonic()
    plan = plan_merge(inputs, stage=stage, strict=strict)
    if plan.missing_shards:
        log.warning("merge: missing shard(s) %s: no input file for them; their records are not in the output",
                    ", ".join(plan.missing_shards))
    for problem in plan.problems:
        log.warning("merge: %s", problem)
    n = write_records(merged_records(plan), output)
    if output != "-":
        config, extra = merged_config(plan)
        write_manifest(output, plan.stage, config, extra)
    if plan.dropped:
        detail = ", ".join(f"{c} from {p}" for p, c in plan.duplicates.items())
        extra_msg = f"; {plan.replaced_failed} failed copies gave way to successful ones" if plan.replaced_failed else ""
        log.warning("merge: %d duplicate records dropped (%s)%s", plan.dropped, detail, extra_msg)
    log.info("merge: %d read from %d files, %d written (key: keys.%s) in %.1fs", plan.records, len(plan.files), n,
             plan.stage, time.monotonic() - t0)
