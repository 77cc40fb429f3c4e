"""Training settings: layers of values -> a TRL/transformers config object, device and precision.

Precedence (lowest first): the stage's defaults < ``--config`` file < ``--preset`` < flags and
``key=value`` overrides on the command line. Keys are the config class's field names
(``learning_rate``, ``per_device_train_batch_size``, ...) or one of thor's own keys below; an
unknown key is a usage error that names the closest known ones. Values given as text (``key=value``
or YAML's ``2e-6``, which YAML reads as a string) are converted to the field's type.

thor's own keys, shared by every stage:
- ``global_batch_size``: sequences per optimizer step over all processes; sets
  ``gradient_accumulation_steps = global / (per_device_train_batch_size * processes)`` (null: use
  ``gradient_accumulation_steps`` as given).
- ``dtype``: ``auto`` (bf16 mixed precision on a GPU that has it, fp32 on CPU), ``float32``, ``bfloat16``.
  Weights stay fp32 (the optimizer's master copy: a 2e-6 update is below bf16's resolution).
- ``lora``, ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``, ``lora_merge``:
  see lora.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from typing import Any

from thor_cli.errors import UsageError

COMMON_DEFAULTS: dict[str, Any] = {
    "global_batch_size": None,
    "dtype": "auto",
    "lora": False,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
    "lora_merge": True,
}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["learning_rate=1e-4", "packing=true"]`` -> values (YAML scalars; types fixed later)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"override {item!r} is not key=value", "write e.g. learning_rate=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def layered(defaults: dict[str, Any], *layers: dict[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated by each layer in turn (later wins). A layer of command-line flags holds
    only the flags that were given."""
    out = dict(defaults)
    for layer in layers:
        out.update(layer or {})
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _scalar_kinds(tp: Any) -> tuple[type, ...]:
    """The scalar types a field annotation admits (bool, int, float, str), in a useful order."""
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else (tp,)
    order = (bool, int, float, str)
    return tuple(k for k in order if k in args)


def coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` converted to what field ``key`` (annotation ``tp``) takes, when it came as text:
    the first of bool, int, float that parses, else the text when the field takes text."""
    if isinstance(value, str) and (tp is dict or getattr(tp, "__origin__", None) is dict
                                   or str(tp).startswith("dict")):
        import orjson

        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UsageError(f"{key}={value!r} is not a JSON object", f'write it as {key}=\'{{"max_batch": 16}}\'')
        return parsed
    kinds = _scalar_kinds(tp)
    if isinstance(value, str):
        for k in kinds:
            if k is str:
                return value
            if k is bool:
                low = value.strip().lower()
                if low in ("true", "false", "yes", "no"):
                    return low in ("true", "yes")
                continue
            try:
                return k(value)
            except ValueError:
                continue
        if kinds:
            raise UsageError(f"{key}={value!r} is not a {' or '.join(k.__name__ for k in kinds)}", "fix the value")
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds and int not in kinds:
        return float(value)
    return value


def world_size() -> int:
    """Processes in this run (``accelerate launch`` sets WORLD_SIZE; 1 otherwise)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), where bf16 beats fp32."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(c()) for c in checks if callable(c))


def precision(dtype: str) -> dict[str, Any]:
    """TrainingArguments flags for ``dtype`` on this machine: ``auto`` is bf16 mixed precision on a
    GPU that supports it, fp32 on CPU; ``bfloat16`` on a CPU is autocast, allowed where the CPU
    has bf16 instructions (avx512_bf16 or AMX: 2-3x fp32's speed there, slower than fp32 elsewhere)."""
    import torch

    cuda = torch.cuda.is_available()
    if dtype not in ("auto", "float32", "bfloat16"):
        raise UsageError(f"dtype={dtype!r} is unknown", "use auto, float32 or bfloat16")
    if dtype == "bfloat16" and not cuda and not cpu_has_bf16():
        raise UsageError("dtype=bfloat16: this CPU has no bf16 instructions (avx512_bf16 or AMX), so bf16 "
                         "would be slower than fp32", "use dtype=auto (fp32 on CPU)")
    bf16 = dtype == "bfloat16" if not cuda else dtype != "float32" and torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": False, "use_cpu": not cuda}


def setting_names(cls: type, own_keys: set[str]) -> set[str]:
    """Every key a stage takes: the fields of its config class ``cls``, its own keys and thor's."""
    return set(_field_types(cls)) | own_keys | set(COMMON_DEFAULTS)


def build_args(cls: type, values: dict[str, Any], *, own_keys: set[str],
               fixed: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(``cls(**fields)``, the rest, all values typed): ``values`` split into fields of ``cls`` and
    thor's own keys (``own_keys`` plus COMMON_DEFAULTS); ``fixed`` are fields the stage sets itself
    (output_dir, ...). Unknown keys raise a UsageError naming the nearest known ones."""
    types_ = _field_types(cls)
    known = setting_names(cls, own_keys)
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        near = {k: difflib.get_close_matches(k, sorted(known), n=3) for k in unknown}
        hint = "; ".join(f"{k}: did you mean {', '.join(v)}?" if v else f"{k}: no such setting" for k, v in near.items())
        raise UsageError(f"unknown training setting(s): {', '.join(unknown)}", hint)
    fields = {k: coerce(k, v, types_[k]) for k, v in values.items() if k in types_ and k not in own_keys}
    rest = {k: v for k, v in values.items() if k not in fields}
    rest = {k: coerce(k, v, type(COMMON_DEFAULTS[k])) if k in COMMON_DEFAULTS and COMMON_DEFAULTS[k] is not None
            else v for k, v in rest.items()}
    gbs = rest.get("global_batch_size")
    if gbs is not None:
        per = int(fields.get("per_device_train_batch_size", 8)) * world_size()
        gbs = int(gbs)
        if gbs <= 0 or gbs % per:
            raise UsageError(f"global_batch_size={gbs} is not a multiple of per_device_train_batch_size x "
                             f"processes = {per}", "change global_batch_size or per_device_train_batch_size")
        fields["gradient_accumulation_steps"] = gbs // per
    typed = {**fields, **rest}
    if "activation_checkpointing" in types_ and "gradient_checkpointing" in types_:
        # transformers 5 renamed it; thor keeps the familiar name and sets the new one (no warning)
        default = next(f.default for f in dataclasses.fields(cls) if f.name == "gradient_checkpointing")
        fields["activation_checkpointing"] = fields.pop("gradient_checkpointing", default)
        fields["gradient_checkpointing"] = None
    fields.update(precision(str(rest.get("dtype", "auto"))))
    fields.update(fixed)
    try:
        return cls(**fields), rest, typed
    except (ValueError, TypeError) as e:
        raise UsageError(f"invalid training settings: {e}", "fix the value (see the preset files for examples)") from None
