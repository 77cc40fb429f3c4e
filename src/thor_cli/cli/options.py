"""Options shared by every command, defined once (hf CLI style ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from thor_cli.config import load_config_file


def _config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load_config_file(value)}
    return value


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
    typer.Option("--config", help="YAML/JSON/TOML file of option defaults; flags on the line win.",
                 is_eager=True, callback=_config_callback, show_default=False),
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
