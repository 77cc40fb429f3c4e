"""``thor rl``: THOR's hierarchical RL and TAPO's DAPO, with tools in the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thor_cli.cli.options import CONFIG_HELP, Inputs, Limit, config_callback, examples


def rl_setting_names() -> set[str]:
    """The keys an rl recipe may set besides the command's options: RLConfig's fields and the
    rollout's (RunOptions)."""
    import dataclasses

    from thor_cli.stages import RunOptions
    from thor_cli.train.rl.config import RLConfig

    return {f.name for f in dataclasses.fields(RLConfig)} | set(RunOptions.names())


RLConfigFile = Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP, is_eager=True,
                                                   callback=config_callback(rl_setting_names), show_default=False)]

RL_EPILOG = examples(
    "thor rl --model runs/sft --output runs/rl --preset cpu train.jsonl",
    "thor rl --model Qwen/Qwen2.5-Math-1.5B --output runs/thor-rl --preset thor data/dapo17k.jsonl "
    "steps=200 learning_rate=1e-6",
    "thor rl --model Qwen/Qwen2.5-3B --output runs/tapo --preset tapo qa.jsonl search_corpus=corpus.jsonl",
    "thor rl --model runs/sft --output runs/rl --preset cpu train.jsonl --resume   # after a kill",
    "accelerate launch --multi_gpu --num_processes 2 -m thor_cli rl --model runs/sft --output runs/rl "
    "--preset cpu train.jsonl   # 2 data-parallel ranks on CPU",
)


def main(
    ctx: typer.Context,
    inputs: Inputs = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The policy to train: a cached name, a "
                                              "checkpoint folder or an HF id.", show_default=False)] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="The run folder: checkpoints, "
                                               "metrics.jsonl, the final model.", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="thor | thor-reasoning | tapo | cpu "
                                               "(presets/rl-*.yaml); over --config, under key=value.",
                                               show_default=False)] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="key=value (repeatable); also accepted "
                                                        "as plain arguments after the data files.",
                                                        show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last complete checkpoint in the "
                                         "output folder.")] = False,
    limit: Limit = None,
    config: RLConfigFile = None,
) -> None:
    """Train a policy with RL: rollouts with tools through the rollout engine, graded rewards.

    THOR (--preset thor): GRPO over groups of 16 with clip-higher, dual-clip, token-mean loss, an
    NLL term on positive-advantage tokens, THOR's rollout filters, DAPO dynamic sampling and
    step-level resampling of the first failing cell. TAPO (--preset tapo): DAPO with the tag
    protocol (python and search), reward -1 for format violations. Settings: any key of the rl
    config or of the rollout (temperature, max_tokens, max_tool_calls, protocol, backend, ...), from
    --config, the preset, or key=value. Writes DIR/metrics.jsonl per step, checkpoints, and the
    final model that thor eval loads.
    """
    from thor_cli.train.rl.run import run_cli

    # --config: the settings that are not options of this command (those reach it through click)
    values = {k: v for k, v in (ctx.default_map or {}).items() if k not in ctx.params}
    files = [x for x in (inputs or []) if "=" not in x]
    kv = [x for x in (inputs or []) if "=" in x] + list(overrides or [])
    run_cli(model=model, output=output, data=files, preset=preset, config_values=values, overrides=kv,
            resume=resume, limit=limit)


main.epilog = RL_EPILOG  # type: ignore[attr-defined]
