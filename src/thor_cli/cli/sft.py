"""``thor sft``: supervised fine-tuning on trajectories or chat records (train/sft)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from thor_cli.cli.options import FailOnError, Limit, examples


def _split(items: list[str]) -> tuple[list[str], list[str]]:
    """Positional words: ``key=value`` overrides (unless a file has that name) and data files."""
    data, overrides = [], []
    for it in items:
        key = it.partition("=")[0]
        if "=" in it and key.replace("_", "").replace("-", "").isalnum() and not Path(it).exists():
            overrides.append(it)
        else:
            data.append(it)
    return data, overrides


def main(
    items: Annotated[list[str] | None, typer.Argument(
        help="JSONL data files ('-' or none: stdin) and key=value overrides of any training setting "
        "(e.g. learning_rate=1e-4 save_steps=50).", show_default=False, metavar="[DATA|KEY=VALUE]...")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to train: a cached name (thor models list), a "
                                       "checkpoint folder or an HF id.", show_default=False)] = ...,  # type: ignore[assignment]
    output: Annotated[str, typer.Option("--output", "-o", help="Run folder: checkpoints, metrics.jsonl, and the "
                                        "final model (thor eval --model DIR).", show_default=False)] = ...,  # type: ignore[assignment]
    config: Annotated[Path | None, typer.Option("--config", help="Recipe file (YAML/JSON/TOML) of training "
                                                "settings; --preset and the line win.", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Named settings: thor (the paper's cold start), "
                                               "thor-reasoning, cpu (SmolLM2-135M in minutes).",
                                               show_default=False)] = None,
    protocol: Annotated[str | None, typer.Option("--protocol", help="Tool protocol that chat records are laid out "
                                                 "in: thor (default) | tapo.", show_default=False)] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapters (merged into the saved model) "
                                              "or full fine-tuning (default).", show_default=False)] = None,
    packing: Annotated[bool | None, typer.Option("--packing/--no-packing", help="Pack sequences (padding-free; "
                                                 "only where the model's attention keeps them apart).",
                                                 show_default=False)] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option(
        "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations (less memory, slower).",
        show_default=False)] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per record, prompt included.",
                                                   show_default=False)] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data.", show_default=False)] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps.",
                                                  show_default=False)] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per device per micro-step.",
                                                   show_default=False)] = None,
    global_batch_size: Annotated[int | None, typer.Option("--global-batch-size", help="Sequences per optimizer "
                                                          "step over all processes (sets gradient accumulation).",
                                                          show_default=False)] = None,
    save_steps: Annotated[int | None, typer.Option("--save-steps", help="Checkpoint every N steps.",
                                                   show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", show_default=False)] = None,
    report_to: Annotated[str | None, typer.Option("--report-to", help="Also log to tensorboard or wandb "
                                                  "(optional packages).", show_default=False)] = None,
    truncate: Annotated[bool | None, typer.Option("--truncate", help="Cut records over --max-length instead of "
                                                  "skipping them.", show_default=False)] = None,
    include_unfinished: Annotated[bool | None, typer.Option("--include-unfinished", help="Also train on "
                                                            "trajectories that ran out of tokens, context or "
                                                            "tool calls.", show_default=False)] = None,
    include_errors: Annotated[bool | None, typer.Option("--include-errors", help="Also train on records with an "
                                                        "'error'.", show_default=False)] = None,
    correct_only: Annotated[bool | None, typer.Option("--correct-only", help="Train only on records whose "
                                                      "grade.correct is true (thor eval/gen output).",
                                                      show_default=False)] = None,
    retokenize: Annotated[bool | None, typer.Option("--retokenize/--no-retokenize", help="Re-tokenize records "
                                                    "whose ids another tokenizer made (default), or skip them.",
                                                    show_default=False)] = None,
    system_prompt: Annotated[str | None, typer.Option("--system-prompt", help="System message for prompts "
                                                      "rebuilt from 'question' or 'messages' without one.",
                                                      show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last complete "
                                         "checkpoint (weights, optimizer, scheduler, RNG, data position).")] = False,
    limit: Limit = None,
    fail_on_error: FailOnError = False,
) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on trajectory records (thor eval/gen/rl) or chat records.

    Trains on what the model wrote (text, code cells, the end-of-turn token); prompts and tool
    outputs are masked. Records whose ids this model's tokenizer made are used unchanged; others
    are re-tokenized segment by segment. Unusable records are counted by reason on stderr (and in
    DIR.manifest.json); --fail-on-error makes them fatal. Settings: defaults < --config < --preset
    < flags and key=value. Multi-GPU: accelerate launch --config_file recipes/accelerate/zero3.yaml
    -m thor_cli sft ... (see docs/TRAINING.md).
    """
    from thor_cli.config import load_config_file
    from thor_cli.presets import load_preset
    from thor_cli.train.plumbing.settings import layered, parse_overrides
    from thor_cli.train.sft.trainer import run_sft, sft_defaults, sft_setting_names

    data, overrides = _split(items or [])
    given: dict[str, Any] = {
        "protocol": protocol, "lora": lora, "packing": packing, "gradient_checkpointing": gradient_checkpointing,
        "max_length": max_length, "num_train_epochs": epochs, "max_steps": max_steps, "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size, "global_batch_size": global_batch_size, "save_steps": save_steps,
        "seed": seed, "report_to": report_to, "truncate": truncate, "include_unfinished": include_unfinished,
        "include_errors": include_errors, "correct_only": correct_only, "retokenize": retokenize, "system_prompt": system_prompt,
    }
    recipe = load_config_file(config, sft_setting_names(), command="thor sft") if config else None
    values = layered(sft_defaults(), recipe,
                     load_preset("sft", preset, sft_setting_names()) if preset else None,
                     {k: v for k, v in given.items() if v is not None}, parse_overrides(overrides))
    run_sft(model=model, output=output, inputs=data, values=values, resume=resume, fail_on_error=fail_on_error,
            limit=limit)


main.epilog = examples(  # type: ignore[attr-defined]
    "thor data get gsm8k --limit 64 | thor eval -m smollm2-135m --keep-ids | thor sft -m smollm2-135m "
    "-o runs/sft --preset cpu --correct-only -",
    "thor sft -m Qwen/Qwen2.5-Math-1.5B -o runs/cold --preset thor tirgen.jsonl save_steps=200",
    "thor sft -m smollm2-135m -o runs/lora --preset cpu --lora chats.jsonl lora_r=8",
    "thor sft -m smollm2-135m -o runs/sft --preset cpu --resume traj.jsonl",
    "accelerate launch --config_file recipes/accelerate/zero3.yaml -m thor_cli sft -m M -o runs/sft "
    "--preset thor data.jsonl",
)
