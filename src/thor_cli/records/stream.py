"""The plumbing every JSONL command shares: inputs, --limit, --shard, --resume, output, manifest.

A command does::

    with open_stream("exec", inputs, output, resume=resume, shard=shard, limit=limit,
                     config=cfg) as st:
        for rec in st.records:                      # InputRecord (data, path, line)
            key = st.key(rec)                       # content key of this unit of work
            if st.skip(key):                        # already in the output (--resume)
                continue
            st.emit(do_work(rec.data), key)

and gets bounded memory, whole lines, NAME.part + rename, a manifest, and a summary on stderr.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from thor_cli import __version__
from thor_cli.errors import ThorError, UsageError
from thor_cli.log import log
from thor_cli.records.jsonl import InputRecord, OutputSink, iter_records, write_json_atomic
from thor_cli.records.keys import KEYS_FIELD, config_hash, content_key
from thor_cli.records.shard import Shard, parse_shard, shard_from_env

ShardUnit = Callable[[dict], "str | None"]


def _unit_position(unit: str) -> int:
    return int.from_bytes(hashlib.sha256(unit.encode()).digest()[:8], "big")


def select(records: Iterator[InputRecord], *, shard: Shard | None, limit: int | None,
           unit: ShardUnit | None = None) -> Iterator[InputRecord]:
    """The first ``limit`` records, then this shard's share of them: by index modulo n, or, for
    records that ``unit`` maps to a name (``thor exec``: the session), by a hash of that name, so
    that records which belong together land in the same shard."""
    for i, rec in enumerate(records):
        if limit is not None and i >= limit:
            return
        if shard is None:
            yield rec
            continue
        name = unit(rec.data) if unit is not None else None
        if shard.owns(i if name is None else _unit_position(str(name))):
            yield rec


@dataclass
class Stream:
    stage: str
    records: Iterator[InputRecord]
    sink: OutputSink
    config: dict[str, Any]
    read: int = 0
    skipped: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    def key(self, rec: InputRecord | dict[str, Any], sample: int | None = None) -> str:
        data = rec.data if isinstance(rec, InputRecord) else rec
        return content_key(data, self.config, stage=self.stage, sample=sample)

    def skip(self, key: str) -> bool:
        if key in self.sink.done:
            self.skipped += 1
            return True
        return False

    def emit(self, record: dict[str, Any], key: str | None = None) -> None:
        if key is not None:
            record[KEYS_FIELD] = {**(record.get(KEYS_FIELD) or {}), self.stage: key}
        if record.get("error"):
            self.failed += 1
        self.sink.write(record)


def _counting(st: Stream, it: Iterator[InputRecord]) -> Iterator[InputRecord]:
    for rec in it:
        st.read += 1
        yield rec


def check_resume_config(path: str, stage: str, config: dict[str, Any]) -> None:
    """--resume into an output made with another config would mix two runs in one file: refuse."""
    from pathlib import Path

    import orjson

    manifest = Path(f"{path}.manifest.json")
    if not manifest.exists():
        return
    try:
        old = orjson.loads(manifest.read_bytes())
    except orjson.JSONDecodeError:
        return
    if old.get("stage") == stage and old.get("config_hash") not in (None, config_hash(config)):
        changed = sorted(k for k in {*old.get("config", {}), *config}
                         if old.get("config", {}).get(k) != config.get(k))
        raise UsageError(f"--resume: {path} was made with another config (changed: {', '.join(changed) or '?'})",
                         "rerun with the same options, or write to a new -o file")


def write_manifest(path: str, stage: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    write_json_atomic(f"{path}.manifest.json", {
        "thor_version": __version__, "stage": stage, "argv": sys.argv, "config": config,
        "config_hash": config_hash(config), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    })


@contextmanager
def open_sink(stage: str, output: str = "-", *, resume: bool = False, config: dict[str, Any] | None = None,
              shard: Shard | None = None) -> Iterator[OutputSink]:
    """The output side alone (for commands whose inputs are not a JSONL stream, like ``thor eval``'s
    benchmarks): the --resume check against the manifest, NAME.part, the manifest, and on the way
    out commit (rename) or abort (keep the .part, say how to continue)."""
    config = config or {}
    if resume and output != "-":
        check_resume_config(output, stage, config)
    sink = OutputSink(output, resume=resume, stage=stage)
    if sink.dropped_bytes:
        log.warning("%s: dropped a torn last line (%d bytes) from %s", stage, sink.dropped_bytes, sink.part)
    if resume and sink.done:
        log.info("%s: resuming; %d records already in %s", stage, len(sink.done), output)
    if sink.retried:
        log.info("%s: resuming; %d failed records will be retried", stage, sink.retried)
    if output != "-":
        write_manifest(output, stage, config, {"shard": str(shard) if shard else None})
    try:
        yield sink
    except BaseException:
        sink.abort()
        if output != "-" and sink.written:
            log.warning("%s: %d records kept in %s; rerun with --resume to continue", stage, sink.written, sink.part)
        raise
    sink.commit()


@contextmanager
def open_stream(stage: str, inputs: list[str] | None, output: str = "-", *, resume: bool = False,
                shard: str | None = None, limit: int | None = None, config: dict[str, Any] | None = None,
                fail_on_error: bool = False, shard_unit: ShardUnit | None = None) -> Iterator[Stream]:
    config = config or {}
    sh = parse_shard(shard) if shard else shard_from_env()
    if sh is not None:
        log.debug("%s: shard %s", stage, sh)
    with open_sink(stage, output, resume=resume, config=config, shard=sh) as sink:
        st = Stream(stage, iter(()), sink, config)
        st.records = _counting(st, select(iter_records(inputs or ["-"]), shard=sh, limit=limit, unit=shard_unit))
        yield st
    if st.read == 0:
        log.warning("%s: no input records", stage)
    secs = time.monotonic() - st.started
    msg = f"{stage}: {st.read} read, {sink.written} written"
    if st.skipped:
        msg += f", {st.skipped} already done"
    if st.failed:
        msg += f", {st.failed} failed (see their 'error' field)"
    log.info("%s in %.1fs", msg, secs)
    if fail_on_error and st.failed:
        raise ThorError(f"{st.failed} records failed", "see their 'error' field; drop --fail-on-error to exit 0")
