"""Per-step metrics and progress: ``DIR/metrics.jsonl``, stderr, and tensorboard/wandb when asked.

``MetricsCallback`` writes one JSON line per logged step (main process only): ``step``, ``epoch``,
``elapsed_s`` and every number the trainer logged (``loss``, ``learning_rate``, ``grad_norm``,
``num_tokens`` = tokens processed, ``trained_tokens`` = tokens with a label, entropy, ...), plus
``tokens_per_s`` and ``trained_tokens_per_s`` over the interval since the previous line. A resumed
run first drops the lines past its checkpoint's step, so the file reads as one run.

``StderrProgress`` replaces transformers' progress/printer callbacks (they print the logs to
stdout): a bar on a terminal, one log line per logged step on stderr otherwise.

Tensorboard and wandb go through transformers' own integrations (``report_to``); they are optional
dependencies, checked (and imported by transformers) only when asked for.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from transformers import TrainerCallback

from thor_cli.errors import UsageError
from thor_cli.log import log

METRICS_FILE = "metrics.jsonl"
_REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


def check_report_to(report_to: Any) -> list[str]:
    """``report_to`` as a list of integrations ("none" or empty: only metrics.jsonl), each installed."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n for n in names if n and n != "none"]
    for n in names:
        if n not in _REPORTERS:
            raise UsageError(f"report_to={n!r} is not supported", f"use one of: {', '.join(_REPORTERS)} (or none)")
        if not any(importlib.util.find_spec(m) is not None for m in _REPORTERS[n]):
            raise UsageError(f"report_to={n} needs the {_REPORTERS[n][0]} package", f"pip install {_REPORTERS[n][0]}")
    return names


def trim(path: Path, step: int) -> int:
    """Drop lines of ``path`` past ``step`` (a resumed run redoes them); returns lines dropped."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for raw in path.read_bytes().splitlines():
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            dropped += 1  # a torn last line
            continue
        if isinstance(row, dict) and int(row.get("step", 0)) > step:
            dropped += 1
            continue
        keep.append(raw + b"\n")
    if dropped:
        tmp = path.with_suffix(".part")
        tmp.write_bytes(b"".join(keep))
        tmp.replace(path)
    return dropped


class MetricsCallback(TrainerCallback):
    """Appends one line per logged training step to ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.summary: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self._t0 = self._tlast = time.monotonic()
        self._prev: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t0 = self._tlast = time.monotonic()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:  # the end-of-training summary, not a step
            self.summary = dict(logs)
            return
        if "loss" not in logs:
            return
        now = time.monotonic()
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4),
                               "elapsed_s": round(now - self._t0, 3)}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "epoch"})
        dt = max(now - self._tlast, 1e-9)
        for key, rate in (("num_tokens", "tokens_per_s"), ("trained_tokens", "trained_tokens_per_s")):
            if key in row:
                prev = self._prev.get(key)
                if prev is not None:
                    row[rate] = round((row[key] - prev) / dt, 2)
                self._prev[key] = row[key]
        self._tlast = now
        with open(self.path, "ab") as f:
            f.write(orjson.dumps(row) + b"\n")
        self.last = row


class StderrProgress(TrainerCallback):
    """Progress on stderr only: a tqdm bar on a terminal, else a log line per logged step."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, file=sys.stderr, dynamic_ncols=True,
                            desc="train")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "grad_norm" in logs:
            parts.append(f"grad_norm {logs['grad_norm']:.3f}")
        line = "train: " + ", ".join(parts)
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            log.info("%s", line)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_thor_callbacks(trainer: Any, metrics_path: Path) -> MetricsCallback:
    """Swap transformers' stdout printers for stderr progress, and add the metrics writer."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StderrProgress())
    cb = MetricsCallback(metrics_path)
    trainer.add_callback(cb)
    return cb
