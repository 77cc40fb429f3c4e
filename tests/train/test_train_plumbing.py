"""The shared training plumbing: settings, the run folder, metrics (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from thor_cli.errors import UsageError
from thor_cli.train.plumbing import rundir
from thor_cli.train.plumbing.metrics import MetricsCallback, check_report_to, trim
from thor_cli.train.plumbing.settings import build_args, coerce, parse_overrides


def test_overrides_are_typed_by_the_field_they_set(tmp_path: Path) -> None:
    from trl import SFTConfig

    vals = parse_overrides(["learning_rate=2e-6", "packing=true", "max_length=128", "lr_scheduler_type=cosine",
                            "global_batch_size=8", "per_device_train_batch_size=2", "max-grad-norm=1"])
    args, rest, typed = build_args(SFTConfig, vals, own_keys=set(), fixed={"output_dir": str(tmp_path)})
    assert args.learning_rate == 2e-6 and isinstance(typed["learning_rate"], float)
    assert args.packing is True and args.max_length == 128 and args.max_grad_norm == 1.0
    assert args.gradient_accumulation_steps == 4  # 8 sequences / (2 per device x 1 process)
    assert rest["global_batch_size"] == 8
    assert args.activation_checkpointing is True  # unset: the config class's default (TRL's: on)
    off, _, _ = build_args(SFTConfig, {"gradient_checkpointing": "false"}, own_keys=set(),
                           fixed={"output_dir": str(tmp_path)})
    assert off.activation_checkpointing is False and off.gradient_checkpointing is False
    assert coerce("x", "yes", bool) is True and coerce("x", "3", int | None) == 3 and coerce("x", "a", str | int) == "a"
    with pytest.raises(UsageError, match="not a int"):
        coerce("max_length", "long", int | None)
    with pytest.raises(UsageError, match="not key=value"):
        parse_overrides(["learning_rate"])


def test_global_batch_must_divide_and_world_size_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trl import SFTConfig

    with pytest.raises(UsageError, match="not a multiple"):
        build_args(SFTConfig, {"global_batch_size": 10, "per_device_train_batch_size": 4}, own_keys=set(),
                   fixed={"output_dir": str(tmp_path)})
    monkeypatch.setattr("thor_cli.train.plumbing.settings.world_size", lambda: 8)  # as under accelerate launch
    args, _, _ = build_args(SFTConfig, {"global_batch_size": 256, "per_device_train_batch_size": 4}, own_keys=set(),
                            fixed={"output_dir": str(tmp_path)})
    assert args.gradient_accumulation_steps == 8


def test_run_folder_checks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert rundir.prepare(out, resume=False) is None and out.is_dir()
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(UsageError, match="not empty"):
        rundir.prepare(out, resume=False)
    with pytest.raises(UsageError, match="no complete checkpoint"):
        rundir.prepare(out, resume=True)
    for step in (2, 4, 6):
        ck = out / f"checkpoint-{step}"
        ck.mkdir()
        (ck / "trainer_state.json").write_text("{}")
        if step < 6:  # checkpoint-6 died while being written: no thor_state.json
            rundir.write_state(ck, {"step": step, "counters": {"trained_tokens": step * 10}})
    assert rundir.prepare(out, resume=True) == out / "checkpoint-4"
    assert rundir.read_state(out / "checkpoint-4")["counters"] == {"trained_tokens": 40}
    part = out / ".final.part"
    part.mkdir()
    (part / "config.json").write_text("{}")
    (part / "model.safetensors").write_text("w")
    rundir.publish(part, out)
    assert rundir.has_model(out) and not part.exists() and (out / "model.safetensors").read_text() == "w"


def test_metrics_lines_rates_and_trim(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    cb = MetricsCallback(path)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, epoch=0.0)
    cb.on_train_begin(None, state, None)
    for step in (1, 2, 3):
        state.global_step, state.epoch = step, step / 3
        cb.on_log(None, state, None, logs={"loss": 1.0 / step, "learning_rate": 1e-4, "grad_norm": 0.5,
                                           "num_tokens": 100.0 * step, "trained_tokens": 40 * step, "note": "x"})
    cb.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 0.6})
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and "note" not in rows[0]
    assert "tokens_per_s" not in rows[0] and rows[1]["tokens_per_s"] > 0 and rows[2]["trained_tokens_per_s"] > 0
    assert cb.summary == {"train_runtime": 1.0, "train_loss": 0.6}
    other = SimpleNamespace(is_world_process_zero=False, global_step=4, epoch=1.0)
    cb.on_log(None, other, None, logs={"loss": 0.1})  # only the main process writes
    assert len(path.read_text().splitlines()) == 3
    with open(path, "a") as f:
        f.write('{"step": 4, "lo')  # torn
    assert trim(path, 2) == 2
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]


def test_report_to_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def missing(name: str, *a: Any) -> Any:
        return None if name in ("wandb", "tensorboard", "tensorboardX") else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    assert check_report_to("none") == [] and check_report_to(None) == []
    with pytest.raises(UsageError, match="pip install wandb"):
        check_report_to("wandb")
    with pytest.raises(UsageError, match="pip install tensorboard"):
        check_report_to(["tensorboard"])
    with pytest.raises(UsageError, match="not supported"):
        check_report_to("mlflow")
