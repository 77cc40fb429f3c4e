"""Content keys: a short hash of the canonical JSON of a record's inputs plus the resolved config.

Two runs over the same record with the same config give the same key, whatever the key order or
whitespace of the input. ``--resume`` uses them to skip finished work.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

KEYS_FIELD = "keys"  # record["keys"][stage] = key of the work unit that produced this record


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8. Non-JSON values are an error, not silently str()-ed."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def config_hash(config: dict[str, Any]) -> str:
    """The hash of a resolved config in manifests (and what --resume compares): the same canonical
    JSON as content keys; values that are not JSON (a Path) count by their text.

    >>> config_hash({"a": 1, "b": [2]}) == config_hash({"b": [2], "a": 1})
    True
    """
    blob = orjson.dumps(config, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(blob).hexdigest()[:16]


def content_key(record: dict[str, Any], config: dict[str, Any] | None = None, *, stage: str = "",
                sample: int | None = None) -> str:
    """Key of one unit of work: the record (minus earlier stages' keys), the config, the sample index.

    >>> content_key({"id": 1, "q": "x"}) == content_key({"q": "x", "id": 1})
    True
    >>> content_key({"id": 1}, {"t": 0.6}) != content_key({"id": 1}, {"t": 1.0})
    True
    """
    inputs = {k: v for k, v in record.items() if k != KEYS_FIELD}
    payload: dict[str, Any] = {"record": inputs, "config": config or {}, "stage": stage}
    if sample is not None:
        payload["sample"] = sample
    return hashlib.sha256(canonical_json(payload)).hexdigest()[:20]
