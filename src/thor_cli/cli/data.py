"""``thor data``: shipped benchmarks, conversion to problem records, synthetic problems, merging shards."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from thor_cli.cli.options import Config, Inputs, Limit, Output, examples
from thor_cli.log import log
from thor_cli.records import OutputSink

app = typer.Typer(
    help="Problem sets: list and get the benchmarks shipped with thor, convert other data to problem records, "
    "generate synthetic problems, merge sharded outputs.",
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
    from thor_cli.data.merge import merged_config, merged_records, plan_merge
    from thor_cli.errors import UsageError
    from thor_cli.records.stream import write_manifest

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


def _parse_splits(spec: str, known: Sequence[str]) -> dict[str, int]:
    """``train=2000,test=200`` -> {"train": 2000, "test": 200}."""
    from thor_cli.errors import UsageError

    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("=")
        if name not in known or not count.strip().isdigit():
            raise UsageError(f"--splits {spec!r}: {part!r} is not SPLIT=N with SPLIT one of {', '.join(known)}",
                             "write e.g. --splits train=2000,test=200,hard=200")
        out[name] = int(count)
    if not out:
        raise UsageError(f"--splits {spec!r} names no split", "write e.g. --splits train=2000,test=200,hard=200")
    return out


@app.command("synth", epilog=examples(
    "thor data synth arithmetic --split train --n 2000 --seed 0 -o train.jsonl",
    "thor data synth arithmetic --splits train=2000,test=200,hard=200 --out-dir data/arith",
    "thor data synth arithmetic --split hard --n 3 --form word | jq -r .question",
    "thor data synth arithmetic --split test --n 200 | thor eval --model smollm2-135m --limit 20",
))
def synth(
    name: Annotated[str, typer.Argument(help="What to generate: arithmetic.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="Split to write: train, test or hard (harder: 2-4 "
                     "operations chained, bigger numbers).")] = "train",
    n: Annotated[int, typer.Option("--n", help="Number of problems.")] = 1000,
    splits: Annotated[str | None, typer.Option("--splits", help="Several splits at once, SPLIT=N,...; each goes "
                      "to --out-dir/SPLIT.jsonl.", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Folder for --splits.", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same problems.")] = 0,
    form: Annotated[str, typer.Option("--form", help="plain ('Compute 4821 * 739.'), word (a short story) or "
                    "mixed (half each).")] = "mixed",
    solutions: Annotated[bool, typer.Option("--solutions", help="Also give each record a worked tool-integrated "
                         "solution as an OpenAI chat (messages: one python call, its output, the boxed "
                         "answer), for a cold start with thor sft.")] = False,
    output: Output = "-",
) -> None:
    """Generate problem records: id, question, exact answer (a string), source (arith-SPLIT), task,
    and meta (the Python expression that computes the answer, ops, difficulty, kind, form, seed).

    The splits never share a problem, for any seeds: every expression belongs to one split by a
    hash of its canonical form (so 4821 * 739 and 739 * 4821 are one problem). Answers are exact
    (integers, or terminating decimals), never computed in floating point.
    """
    import importlib

    from thor_cli.data.registry import SYNTHETIC
    from thor_cli.errors import ThorError, UsageError
    from thor_cli.records.stream import write_manifest

    if name not in SYNTHETIC:
        raise UsageError(f"unknown generator {name!r}", f"choose one of: {', '.join(SYNTHETIC)}")
    gen = importlib.import_module(SYNTHETIC[name][0])
    if (splits is None) != (out_dir is None):
        raise UsageError("--splits and --out-dir go together", "pass both, or --split with -o")
    if splits is not None and output != "-":
        raise UsageError("-o writes one split; --splits writes to --out-dir", "drop -o, or use --split")
    t0 = time.monotonic()

    def made(part: str, count: int) -> Iterator[dict[str, Any]]:
        for rec in gen.generate(part, count, seed, form):
            if solutions:
                rec["messages"] = gen.worked_solution(rec)
            yield rec

    if splits is None:
        config = {"name": name, "split": split, "n": n, "seed": seed, "form": form, "solutions": solutions}
        written = write_records(made(split, n), output)
        if output != "-":
            write_manifest(output, "synth", config)
        log.info("synth %s: %d %s problems in %.1fs", name, written, split, time.monotonic() - t0)
        return
    assert out_dir is not None
    questions: dict[str, str] = {}  # question -> split: the splits are disjoint by construction; checked here
    for part, count in _parse_splits(splits, gen.SPLITS).items():
        records = list(made(part, count))
        for rec in records:
            other = questions.setdefault(rec["question"], part)
            if other != part:
                raise ThorError(f"splits {other} and {part} share a question: {rec['question']!r}",
                                "this is a bug in thor; report it")
        path = str(out_dir / f"{part}.jsonl")
        write_records(records, path)
        write_manifest(path, "synth", {"name": name, "split": part, "n": count, "seed": seed, "form": form,
                                       "solutions": solutions})
        log.info("synth %s: %d %s problems -> %s", name, len(records), part, path)
    log.info("synth %s: done in %.1fs", name, time.monotonic() - t0)
