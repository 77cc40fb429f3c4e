"""``thor rl`` end to end: settings in layers, the data, the run folder, the manifest, the loop.

Settings (lowest first): defaults (``RLConfig`` and ``RunOptions``, with RL's rollout defaults
below) < ``--config`` < ``--preset`` (``presets/rl-<name>.yaml``) < ``key=value``. A key is an
``RLConfig`` field or a rollout option (``RunOptions``: temperature, max_tokens, max_tool_calls,
protocol, backend, self_correct, ...); anything else is a usage error naming the nearest keys.

Under ``accelerate launch`` every rank runs this; rank 0 alone checks and prepares the run folder
and writes the manifest and summary, and tells the others which checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError
from thor_cli.stages import RunOptions
from thor_cli.train.rl.config import RLConfig

# THOR's RL rollouts (paper, section 4): T = 1.0, 5 tool calls, 4096-token responses; no
# self-correction while training (the step level learns from the failing cell instead).
RL_ROLLOUT_DEFAULTS: dict[str, Any] = {"temperature": 1.0, "max_tool_calls": 5, "max_tokens": 4096,
                                       "self_correct": False, "keep_ids": True}


def split_settings(values: dict[str, Any]) -> tuple[RLConfig, dict[str, Any]]:
    """(RLConfig, rollout option values) from one flat mapping, values typed to their fields."""
    from thor_cli.train.plumbing.settings import _field_types, coerce

    rl_types = _field_types(RLConfig)
    run_types = _field_types(RunOptions)
    unknown = sorted(k for k in values if k not in rl_types and k not in run_types)
    if unknown:
        known = sorted(set(rl_types) | set(run_types))
        near = {k: difflib.get_close_matches(k, known, n=3) for k in unknown}
        raise UsageError(f"unknown rl setting(s): {', '.join(unknown)}",
                         "; ".join(f"{k}: did you mean {', '.join(v)}?" if v else f"{k}: no such setting"
                                   for k, v in near.items()))
    rl = {k: coerce(k, v, rl_types[k]) for k, v in values.items() if k in rl_types}
    run = {k: coerce(k, v, run_types[k]) for k, v in values.items() if k in run_types and k not in rl_types}
    if "seed" in values:
        run["seed"] = rl["seed"]
    return RLConfig.from_values(rl), run


def resolve(preset: str | None, config_values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    from thor_cli.presets import load_preset
    from thor_cli.train.plumbing.settings import parse_overrides

    values: dict[str, Any] = dict(RL_ROLLOUT_DEFAULTS)
    values.update(config_values)
    if preset is not None:
        values.update(load_preset("rl", preset))
    values.update(parse_overrides(overrides))
    return values


def run_cli(*, model: str | None, output: str | None, data: list[str], preset: str | None,
            config_values: dict[str, Any], overrides: list[str], resume: bool, limit: int | None) -> dict[str, Any]:
    from thor_cli import aio
    from thor_cli.log import log
    from thor_cli.models.resolve import resolve_model
    from thor_cli.records.jsonl import write_json_atomic
    from thor_cli.records.stream import write_manifest
    from thor_cli.stages import load_problems
    from thor_cli.train.plumbing import rundir
    from thor_cli.train.plumbing.run import end_distributed
    from thor_cli.train.rl import sharding
    from thor_cli.train.rl.ranks import start
    from thor_cli.train.rl.trainer import train_rl

    if not model:
        raise UsageError("--model is needed (the policy to train)", "pass --model NAME or a checkpoint folder")
    if not output:
        raise UsageError("--output is needed (the run folder)", "pass --output runs/rl")
    cfg, run_values = split_settings(resolve(preset, config_values, overrides))
    path = resolve_model(model)
    run = RunOptions.from_values(**{**run_values, "model": path, "keep_ids": True})
    if run.no_tools:
        raise UsageError("thor rl trains tool use: the python tool must be on", "drop no_tools")
    problems = list(load_problems([], data or ["-"], limit))
    missing = [p.get("id") for p in problems if p.get("answer") is None]
    if missing:
        raise UsageError(f"{len(missing)} problems have no gold answer (e.g. {missing[0]!r}): RL needs a reward",
                         'give every record an "answer"')
    if not problems:
        raise UsageError("no problems to train on", "pass a JSONL file of problems with answers")
    out = Path(output)
    ranks = start()
    ckpt, failed = None, None
    if ranks.main:
        try:
            ckpt = rundir.prepare(out, resume=resume)
        except UsageError as e:
            failed = (e.message, e.hint)
    ckpt_name, failed = ranks.broadcast((ckpt.name if ckpt is not None else None, failed))
    if failed is not None:
        raise UsageError(*failed)
    ckpt = out / ckpt_name if ckpt_name is not None else None
    if ranks.main:
        rollout = {k: v for k, v in dataclasses.asdict(run).items() if k != "api_key"}
        sharded = sharding.enabled(cfg.fsdp, ranks.world)
        config = {"model": path, "rl": cfg.to_dict(), "rollout": rollout, "problems": len(problems),
                  "ranks": ranks.world, "fsdp": sharded}
        write_manifest(str(out), "rl", config)
        log.info("rl: %d problems, %d steps of %d prompts x %d rollouts%s", len(problems), cfg.steps,
                 cfg.problems_per_step, cfg.group_size, f" on {ranks.world} ranks{' (FSDP)' if sharded else ''}" if ranks.world > 1 else "")
    summary = aio.run(train_rl(problems, run, cfg, out, model_path=path, ckpt=ckpt))
    end_distributed()  # not on an error: that rank exits, and the launcher stops the others
    if ranks.main:
        write_json_atomic(f"{out}.summary.json", summary)
    return summary
