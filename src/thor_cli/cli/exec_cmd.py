"""``thor exec``: run Python cells from JSONL in the nsjail sandbox; ``thor exec serve``: share it.

``thor exec [INPUTS]`` is ``thor exec run [INPUTS]`` (the default subcommand).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from thor_cli.cli.options import Config, DefaultRun, Inputs, Limit, Output, Resume, ShardOpt, examples
from thor_cli.errors import UsageError

app = typer.Typer(
    cls=DefaultRun, no_args_is_help=False, add_completion=False, rich_markup_mode="rich",
    help="Run Python cells in the sandbox (nsjail; warm stateful sessions). [bold]thor exec[/bold] with no "
    "subcommand is [bold]thor exec run[/bold]: cells from JSONL in, each record plus an 'exec' result out. "
    "[bold]thor exec serve[/bold] shares a sandbox pool over HTTP or a Unix socket. The jail's Python: "
    "$THOR_SANDBOX_PYTHON (a venv's python: its own packages), else /opt/thor/sandbox (CPython 3.12+, "
    "shell/setup-sandbox-python.sh), else /usr/bin/python3 with thor's venv ('system' forces that).",
    context_settings={"help_option_names": ["-h", "--help"]},
)

Timeout = Annotated[float, typer.Option("--timeout", help="Wall-clock seconds per cell (a record's own 'timeout' wins).")]
Memory = Annotated[int, typer.Option("--memory", help="Memory (address space) per session, MB; numpy+sympy need ~256.")]
Workers = Annotated[int | None, typer.Option("--workers", help="Cells executing at once, and warm interpreters. "
                                             "Default: the number of cores.", show_default=False)]
# ``slice_s`` of ``thor exec run``: a file of cells is a batch, where a session whose next cell
# already waits keeping its core pays (sandbox/slots.py); rollouts and ``thor exec serve`` keep
# the pool's strict turns. (Here, not in sandbox.config: importing the sandbox costs start-up.)
EXEC_RUN_SLICE_S = 0.05
Slice = Annotated[float, typer.Option(
    "--slice", help="Seconds a session whose next cell is already waiting keeps its core while other sessions "
    "wait (its caches stay warm: more cells/s over a file, longer waits for the others); 0 = strict turns.")]
MaxOutput = Annotated[int, typer.Option("--max-output", help="Characters kept of a cell's stdout and of its stderr "
                                        "(head and tail, marked when cut).")]

RUN_EPILOG = examples(
    "echo '{\"code\": \"print(2**100)\"}' | thor exec",
    "printf '%s\\n' '{\"session\": \"a\", \"code\": \"import sympy as sp; x = sp.sqrt(8)\"}' "
    "'{\"session\": \"a\", \"code\": \"print(x)\"}' | thor exec --timeout 5",
    "thor exec cells.jsonl -o results.jsonl --resume --workers 4",
)
SERVE_EPILOG = examples(
    "thor exec serve --port 8765 &   # then, in Python: SandboxPool.connect('http://HOST:8765')",
    "thor exec serve --unix /tmp/thor-sandbox.sock --workers 8",
    "curl -s localhost:8765/health | head -c 200",
)


def _config(timeout: float, memory: int, workers: int | None, max_output: int, max_sessions: int = 1,
            slice_s: float = 0.0) -> Any:
    from thor_cli.sandbox import SandboxConfig
    from thor_cli.sandbox.config import timeout_problem

    # the sandbox reads 0 or less as "no limit" (or dies on it): a flag never silently means that
    if (why := timeout_problem(timeout)) is not None:
        raise UsageError(f"--timeout: {why}", "give the wall-clock seconds per cell, e.g. --timeout 10")
    for flag, value in (("--memory", memory), ("--workers", workers), ("--max-output", max_output),
                        ("--max-sessions", max_sessions)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: must be at least 1, got {value}", f"see thor exec --help for {flag}")
    if not 0 <= slice_s <= 10:  # (also refuses NaN)
        raise UsageError(f"--slice: must be between 0 and 10 seconds, got {slice_s!r}",
                         "e.g. --slice 0.05 (the default of thor exec run), or --slice 0 for strict turns")
    return SandboxConfig(timeout=timeout, memory_mb=memory, workers=workers, max_output=max_output, slice_s=slice_s)


@app.command("run", epilog=RUN_EPILOG)
def run(
    inputs: Inputs = None,
    output: Output = "-",
    timeout: Timeout = 10.0,
    memory: Memory = 1024,
    workers: Workers = None,
    max_output: MaxOutput = 10_000,
    slice: Slice = EXEC_RUN_SLICE_S,  # (the builtin is not used here; the name is the recipe key, as --slice)
    unordered: Annotated[bool, typer.Option("--unordered", help="Write results as they finish, not in input order.")] = False,
    max_sessions: Annotated[int, typer.Option("--max-sessions", help="Named sessions open at once (a few MB each); "
                                              "past it the one idle longest is closed and its later cells get "
                                              "sandbox_error.")] = 1024,
    resume: Resume = False,
    shard: ShardOpt = None,
    limit: Limit = None,
    config: Config = None,
) -> None:
    """Run cells (the default subcommand of thor exec).

    Input records: [bold]code[/bold]; optional [bold]session[/bold] (records with the same name run in input order in one interpreter whose variables persist; none = a fresh session), [bold]timeout[/bold] (seconds) and [bold]end_session[/bold] (close the session after this cell).

    Output: each record plus [bold]exec[/bold] = status (ok | error | timeout | memory | killed | sandbox_error), stdout, stderr, error, duration_ms, truncated. Plain exec semantics: a trailing expression is not echoed, print it; a cell that printed nothing has status ok and stdout "". A failing cell is data (exit 0). Protections this machine cannot give are named on stderr.
    """
    from thor_cli import aio
    from thor_cli.records.stream import open_stream
    from thor_cli.sandbox import SandboxPool
    from thor_cli.sandbox.runner import run_records

    cfg = _config(timeout, memory, workers, max_output, max_sessions, slice)
    params = dict(timeout=timeout, memory=memory, max_output=max_output)  # what determines results
    # a session's cells must stay together: shards split by session, not by line
    with open_stream("exec", inputs, output, resume=resume, shard=shard, limit=limit, config=params,
                     shard_unit=lambda r: r.get("session")) as st:
        async def go() -> None:
            async with SandboxPool(cfg) as pool:
                await run_records(pool, st.records, st.emit, ordered=not unordered, max_sessions=max_sessions,
                                  key=lambda rec, i: st.key(rec, sample=i), done=st.sink.done)

        aio.run(go())


@app.command("serve", epilog=SERVE_EPILOG)
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (HTTP).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (HTTP).")] = 8765,
    unix: Annotated[str | None, typer.Option("--unix", help="Listen on this Unix socket instead of TCP.",
                                             show_default=False)] = None,
    timeout: Timeout = 10.0,
    memory: Memory = 1024,
    workers: Workers = None,
    max_output: MaxOutput = 10_000,
    config: Config = None,
) -> None:
    """Serve sandbox sessions over HTTP (TCP or a Unix socket) to many rollout workers.

    Clients use [bold]SandboxPool.connect(url)[/bold] (same session()/run()/close() API as the in-process pool). No authentication: bind to localhost or a Unix socket, or keep it behind your cluster's network policy.
    """
    from thor_cli.sandbox.server import serve as serve_forever

    serve_forever(_config(timeout, memory, workers, max_output), host=host, port=port, unix=unix)
