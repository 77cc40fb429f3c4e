"""Options shared by every command, defined once (hf CLI style ``Annotated`` aliases)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from thor_cli.config import load_config_file


def config_keys(ctx: typer.Context, extra: Callable[[], Iterable[str]] | None = None) -> set[str]:
    """What a ``--config`` file may set for the command of ``ctx``: its options (and ``extra()``)."""
    names = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    return names | set(extra() if extra else ())


def config_callback(extra: Callable[[], Iterable[str]] | None = None) -> Callable[..., Path | None]:
    """The ``--config FILE`` callback: the file's values become the command's option defaults (flags
    on the line win); a key that is neither an option nor in ``extra()`` is a usage error."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
        if value is not None:
            values = load_config_file(value, config_keys(ctx, extra), command=ctx.command_path)
            ctx.default_map = {**(ctx.default_map or {}), **values}
        return value

    return callback


CONFIG_HELP = "YAML/JSON/TOML file of option values (a recipe); flags on the line win; an unknown key is an error."


Inputs = Annotated[
    list[str] | None,
    typer.Argument(help="JSONL input files, read in turn; '-' or none reads stdin.", show_default=False),
]
Output = Annotated[
    str, typer.Option("--output", "-o", help="Output JSONL file; '-' is stdout. Written as NAME.part, renamed when done.")
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; sampling seeds derive from it and each record's key.")]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue an earlier run into the same -o file, skipping records already there.")
]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="Process part i of n ('i/n', from 0). Default: from SLURM_ARRAY_TASK_ID/COUNT.",
                 show_default=False),
]
Limit = Annotated[int | None, typer.Option("--limit", help="Read at most N input records.", show_default=False)]
Config = Annotated[
    Path | None,
    typer.Option("--config", help=CONFIG_HELP, is_eager=True, callback=config_callback(), show_default=False),
]
FailOnError = Annotated[
    bool, typer.Option("--fail-on-error", help="Exit 1 if any record failed (failures are always recorded in 'error').")
]


def examples(*lines: str) -> str:
    """The help epilog: runnable examples, shown verbatim."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"[bold]Examples[/bold]\n\n{body}"



def given_on_line(ctx: typer.Context) -> set[str]:
    """Names of the parameters given on the command line (not defaults, --config or env): a preset
    applies to every other one."""
    out = set()
    for name in ctx.params:
        src = ctx.get_parameter_source(name)
        if src is not None and src.name == "COMMANDLINE":
            out.add(name)
    return out


class DefaultRun(TyperGroup):
    """A group whose default subcommand is ``run``: ``thor exec < cells.jsonl`` runs cells, ``thor gen
    problems.jsonl`` generates."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)
