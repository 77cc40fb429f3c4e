"""Records and JSONL streams: schema, streaming I/O, content keys, resume and shards.

Used by every other package; imports none of them.
"""

from thor_cli.records.jsonl import InputRecord, OutputSink, dumps_line, iter_records, loads_line
from thor_cli.records.keys import canonical_json, content_key
from thor_cli.records.schema import (
    SCHEMA_VERSION,
    ExecResult,
    Grade,
    Problem,
    Retry,
    Trajectory,
    Turn,
    get_field,
)
from thor_cli.records.shard import Shard, parse_shard, shard_from_env

__all__ = [
    "SCHEMA_VERSION",
    "ExecResult",
    "Grade",
    "InputRecord",
    "OutputSink",
    "Problem",
    "Retry",
    "Shard",
    "Trajectory",
    "Turn",
    "canonical_json",
    "content_key",
    "dumps_line",
    "get_field",
    "iter_records",
    "loads_line",
    "parse_shard",
    "shard_from_env",
]
