"""The ``thor`` command: one typer app, one thin module per subcommand, one error boundary.

Exit codes: 0 success (also when the reader of stdout goes away, e.g. ``| head``), 1 runtime
or data error, 2 usage error, 130 on Ctrl-C. ``THOR_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import errno
import importlib
import os
import select
import sys

import typer
from typer.exceptions import TyperException

# OpenMP threads that spin while they wait (libgomp's default) collapse when they share cores with
# anything else: measured here with SmolLM2 on 2 busy cores, a decode step took 7.0 s with 2
# spinning threads and 0.57 s with OMP_WAIT_POLICY=PASSIVE (0.55 s with one thread). thor's own
# runs always share the cores (sandbox cells, grader workers, the event loop), so thor asks for
# passive waiting unless the environment says otherwise. Set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from thor_cli import __version__  # noqa: E402
from thor_cli.errors import PipeClosed, ThorError
from thor_cli.log import setup_logging

app = typer.Typer(
    name="thor",
    help="Tool-integrated reasoning: sandboxed Python, TIR rollouts, grading and evaluation. "
    "Commands read and write JSONL on stdin/stdout so they pipe into each other.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (module, attribute, name, kind): kind "command" registers a function, "group" a typer sub-app.
# Only commands that work are listed here; a command that is not built yet is not registered.
COMMANDS: list[tuple[str, str, str, str]] = [
    ("thor_cli.cli.data", "app", "data", "group"),
    ("thor_cli.cli.models", "app", "models", "group"),
    ("thor_cli.cli.grade", "main", "grade", "command"),
    ("thor_cli.cli.show", "main", "show", "command"),
    ("thor_cli.cli.eval_cmd", "main", "eval", "command"),
    ("thor_cli.cli.exec_cmd", "app", "exec", "group"),
    ("thor_cli.cli.gen", "app", "gen", "group"),
    ("thor_cli.cli.sft", "main", "sft", "command"),
    ("thor_cli.cli.rl", "main", "rl", "command"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging on stderr (-vv: debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
) -> None:
    setup_logging(-1 if quiet else verbose)


for _module, _attr, _name, _kind in COMMANDS:
    _obj = getattr(importlib.import_module(_module), _attr)
    if _kind == "group":
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name, epilog=getattr(_obj, "epilog", None))(_obj)


def _silence_stdout() -> None:
    """After the reader went away, point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reader has gone away (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _with_pipe_boundary(command: typer.core.TyperGroup) -> None:
    """typer (vendored click) turns *any* EPIPE OSError into a silent exit 1. Decide here instead:
    the reader of stdout went away -> PipeClosed (quiet, exit 0); any other broken pipe (a worker
    process died) -> an error with a message."""
    invoke = command.invoke

    def guarded(ctx: typer.Context) -> object:
        try:
            return invoke(ctx)
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            if _stdout_reader_gone():
                raise PipeClosed() from None
            raise ThorError(f"a pipe to a helper process broke ({e})",
                            "a worker process died; rerun (with --resume where there is an output file)") from e

    command.invoke = guarded  # type: ignore[method-assign,assignment]


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("THOR_DEBUG", "") not in ("", "0")
    if not sys.stderr.isatty():  # no progress bars from transformers/hub in logs and pipes
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    command = typer.main.get_command(app)
    _with_pipe_boundary(command)  # type: ignore[arg-type]
    code = 0
    try:
        rv = command.main(args=argv, prog_name="thor", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        code = e.exit_code
    except TyperException as e:  # typer's (vendored click's) usage errors: exit_code 2
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            sys.stderr.write(f"Error: {e.format_message()}\n")
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("Interrupted\n")
        code = 130
    except PipeClosed:
        _silence_stdout()
        code = 0
    except ThorError as e:
        if debug:
            raise
        sys.stderr.write(f"Error: {e}\n")
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 -- the one boundary that turns any failure into a message
        if debug:
            raise
        sys.stderr.write(f"Error: {type(e).__name__}: {e}\n(this is a bug in thor; rerun with THOR_DEBUG=1 "
                         "for the traceback and report it)\n")
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code)


if __name__ == "__main__":
    main()
