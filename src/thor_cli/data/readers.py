"""Reading rows for ``thor data convert``: JSONL (or a JSON array), parquet, a ``datasets``
save_to_disk folder, or a hub dataset name (only when online).

Every reader yields :class:`thor_cli.records.InputRecord` (row, file, 1-based line or row
number) so errors can name the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from thor_cli.errors import BackendError, InputError, UsageError
from thor_cli.records import InputRecord, iter_records


def _plain(value: Any) -> Any:
    """numpy/pyarrow scalars and arrays from parquet or datasets -> JSON-able Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def read_parquet(path: str) -> Iterator[InputRecord]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 -- pyarrow raises several types for a bad file
        raise InputError(f"cannot read as parquet ({e})", path=path, hint="check the file is a parquet file") from None
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield InputRecord(_plain(row), path, n)


def read_json_array(path: str) -> Iterator[InputRecord]:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})", path=path, hint="pass JSONL or a JSON array of objects") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"expected a JSON array of objects, got {type(data).__name__}", path=path, hint=None)
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise InputError(f"item {i} is {type(row).__name__}, not an object", path=path, line=i,
                             hint="each item must be one JSON object")
        yield InputRecord(row, path, i)


def _iter_dataset(ds: Any, name: str) -> Iterator[InputRecord]:
    for i, row in enumerate(ds, 1):
        yield InputRecord(_plain(dict(row)), name, i)


def _pick_split(dd: Any, split: str | None, name: str) -> Any:
    splits = list(dd.keys())
    if split is None:
        if len(splits) == 1:
            return dd[splits[0]]
        raise UsageError(f"{name} has splits {', '.join(splits)}", "pick one with --split")
    if split not in dd:
        raise UsageError(f"{name} has no split {split!r}", f"choose one of: {', '.join(splits)}")
    return dd[split]


def read_datasets_folder(path: str, split: str | None) -> Iterator[InputRecord]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(path)
    except Exception as e:  # noqa: BLE001 -- datasets raises FileNotFoundError and others
        raise InputError(f"not a datasets save_to_disk folder ({e})", path=path,
                         hint="pass JSONL, parquet, or a folder written by Dataset.save_to_disk") from None
    if isinstance(ds, DatasetDict):
        ds = _pick_split(ds, split, path)
    elif split is not None:
        raise UsageError(f"--split {split}: {path} holds a single split", "drop --split")
    return _iter_dataset(ds, path)


def read_hub(name: str, split: str | None) -> Iterator[InputRecord]:
    from thor_cli.models.resolve import hub_available

    if os.environ.get("HF_DATASETS_OFFLINE", "") not in ("", "0") or not hub_available():
        raise UsageError(f"{name}: not a file or folder, and the Hugging Face hub cannot be reached (offline)",
                         "check the path, or download the dataset where there is network and pass the file")
    from datasets import load_dataset

    try:
        ds = load_dataset(name, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 -- network and hub errors come in many types
        raise BackendError(f"cannot load hub dataset {name!r} ({type(e).__name__}: {e})",
                           "check the name and the network, or pass a local JSONL/parquet file") from None
    if split is None and hasattr(ds, "keys"):
        ds = _pick_split(ds, None, name)
    return _iter_dataset(ds, name)


def read_rows(inp: str, split: str | None = None) -> Iterator[InputRecord]:
    """Rows of one input, by its kind: '-', .jsonl, .json, .parquet, a folder, or a hub name."""
    if inp == "-":
        return iter_records(["-"])
    p = Path(inp)
    if p.is_dir():
        return read_datasets_folder(inp, split)
    if p.is_file():
        if p.suffix == ".parquet":
            return read_parquet(inp)
        if p.suffix == ".json":
            with open(p, "rb") as f:
                head = f.read(64).lstrip()
            if head.startswith(b"["):
                return read_json_array(inp)
        return iter_records([inp])
    if inp.startswith((".", "/", "~")) or inp.count("/") > 1 or Path(inp).suffix in (".jsonl", ".json", ".parquet"):
        raise UsageError(f"input not found: {inp}", "check the path")
    return read_hub(inp, split)
