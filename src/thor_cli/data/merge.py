"""Merging the outputs of a sharded stage run (``--shard i/n``) into one file, one record per key.

Each shard's output ``FILE`` has ``FILE.manifest.json`` (written by ``records.stream``) naming the
stage, the shard and the config hash, and each record carries ``keys[stage]``, the content key of
the unit of work that made it. :func:`plan_merge` reads the manifests and every record's key and
decides which copy of each key to keep (a successful one over one with an ``error``, else the
first); :func:`merged_records` then streams the kept records in input order. Only the keys, not
the records, are held in memory, so a merge of big trajectory files stays small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from thor_cli.errors import InputError, ThorError, UsageError
from thor_cli.records.jsonl import iter_records
from thor_cli.records.keys import KEYS_FIELD
from thor_cli.records.shard import parse_shard


@dataclass(frozen=True)
class ShardFile:
    """One input file and what its manifest says about it (None where there is no manifest)."""

    path: str
    stage: str | None
    shard: str | None  # "i/n"
    config: dict[str, Any] | None
    config_hash: str | None


@dataclass
class MergePlan:
    stage: str
    files: list[ShardFile]
    keep: set[tuple[int, int]] = field(default_factory=set)  # (file index, line) of each kept record
    records: int = 0  # read, over all files
    duplicates: Counter[str] = field(default_factory=Counter)  # path -> copies dropped from it
    replaced_failed: int = 0  # keys whose failed copy gave way to a later successful one
    missing_shards: list[str] = field(default_factory=list)  # "i/n" with no file
    problems: list[str] = field(default_factory=list)  # mixed configs, shard counts, missing manifests

    @property
    def dropped(self) -> int:
        return sum(self.duplicates.values())


def read_manifest(path: str) -> ShardFile:
    """What ``path``'s manifest says; a file without a manifest gives a ShardFile of Nones."""
    if path == "-":
        raise UsageError("thor data merge reads files, not stdin", "pass the shard output files")
    if not Path(path).is_file():
        raise UsageError(f"input file not found: {path}", "check the path")
    mpath = Path(f"{path}.manifest.json")
    if not mpath.is_file():
        return ShardFile(path, None, None, None, None)
    try:
        m = orjson.loads(mpath.read_bytes())
    except orjson.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})", path=str(mpath),
                         hint="the manifest is damaged; move it away to merge without it") from None
    if not isinstance(m, dict):
        raise InputError("expected a JSON object", path=str(mpath), hint="move the damaged manifest away")
    shard = m.get("shard")
    if shard is not None:
        parse_shard(str(shard))  # a clear error for a malformed value
    return ShardFile(path, m.get("stage"), None if shard is None else str(shard), m.get("config"),
                     m.get("config_hash"))


def _stage_of(files: Sequence[ShardFile], stage: str | None) -> str:
    named = {f.stage for f in files if f.stage}
    if stage is not None:
        return stage
    if len(named) > 1:
        listing = "; ".join(f"{f.path}: {f.stage}" for f in files if f.stage)
        raise ThorError(f"the inputs come from different stages ({listing})",
                        "merge the outputs of one stage at a time, or pick the key with --stage")
    if not named:
        raise UsageError("none of the inputs has a manifest (FILE.manifest.json), so the stage is unknown",
                         "name the stage whose keys to merge by, e.g. --stage grade")
    return named.pop()


def _check_shards(plan: MergePlan) -> None:
    """Fill in missing shards and what does not fit together (mixed configs, shard counts)."""
    files = plan.files
    for f in files:
        if f.stage is None:
            plan.problems.append(f"{f.path} has no manifest: its shard and config are unknown")
        elif f.stage != plan.stage:
            plan.problems.append(f"{f.path} was written by stage {f.stage!r}, not {plan.stage!r}")
    shards = [parse_shard(f.shard) for f in files if f.shard is not None]
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        plan.problems.append(f"the inputs were split into different numbers of shards ({', '.join(map(str, counts))})")
    for n in counts:
        present = {s.index for s in shards if s.count == n}
        plan.missing_shards += [f"{i}/{n}" for i in range(n) if i not in present]
    hashes = {f.config_hash for f in files if f.config_hash is not None}
    if len(hashes) > 1:
        base = next(f for f in files if f.config is not None)
        base_config = base.config or {}
        diffs = []
        for f in files:
            if f.config is None or f.config_hash == base.config_hash:
                continue
            changed = sorted(k for k in {*base_config, *f.config} if base_config.get(k) != f.config.get(k))
            diffs.append(f"{f.path} differs from {base.path} in: {', '.join(changed) or '?'}")
        plan.problems.append("the inputs were made with different configs (" + "; ".join(diffs) + ")")


def plan_merge(paths: Sequence[str], *, stage: str | None = None, strict: bool = False) -> MergePlan:
    """Read the manifests and every record's key; choose one record per key.

    Raises ThorError when ``strict`` and a shard is missing or the inputs do not fit together,
    and InputError (file, line, field) for a record without ``keys[stage]``.
    """
    if not paths:
        raise UsageError("no input files", "pass the output files of the shards, e.g. out.0.jsonl out.1.jsonl")
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise UsageError(f"{dup} is given twice", "pass each shard output once")
    files = [read_manifest(p) for p in paths]
    plan = MergePlan(_stage_of(files, stage), files)
    _check_shards(plan)
    if strict and (plan.missing_shards or plan.problems):
        what = [f"missing shard(s) {', '.join(plan.missing_shards)}"] if plan.missing_shards else []
        hint = ("merge the outputs of one run (one stage, the same options and shard count)" if plan.problems
                else "run the missing shards with the same options")
        raise ThorError("--strict: " + "; ".join(what + plan.problems), hint + ", or drop --strict to merge what is there")
    chosen: dict[str, tuple[int, int, bool]] = {}  # key -> (file index, line, failed)
    for fi, f in enumerate(files):
        for rec in iter_records([f.path]):
            plan.records += 1
            keys = rec.data.get(KEYS_FIELD)
            key = keys.get(plan.stage) if isinstance(keys, dict) else None
            if not isinstance(key, str) or not key:
                raise InputError(f"missing {KEYS_FIELD}.{plan.stage}", path=f.path, line=rec.line, field=KEYS_FIELD,
                                 hint=f"merge only outputs of thor {plan.stage} (they key each record), "
                                      "or pick the stage with --stage")
            failed = bool(rec.data.get("error"))
            old = chosen.get(key)
            if old is None:
                chosen[key] = (fi, rec.line, failed)
                continue
            if old[2] and not failed:  # a success beats an earlier failure
                plan.duplicates[files[old[0]].path] += 1
                plan.replaced_failed += 1
                chosen[key] = (fi, rec.line, failed)
            else:
                plan.duplicates[f.path] += 1
    plan.keep = {(fi, line) for fi, line, _ in chosen.values()}
    return plan


def merged_records(plan: MergePlan) -> Iterator[dict[str, Any]]:
    """The kept records, file by file in the order given, each file in its own order."""
    for fi, f in enumerate(plan.files):
        for rec in iter_records([f.path]):
            if (fi, rec.line) in plan.keep:
                yield rec.data


def merged_config(plan: MergePlan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config for the merged file's manifest (the shards', so that ``--resume`` into the merged
    file checks against it), and what the merge adds to the manifest."""
    base = next((f for f in plan.files if f.config is not None), None)
    extra = {
        "shard": None,
        "merged_from": [{"path": f.path, "shard": f.shard, "config_hash": f.config_hash} for f in plan.files],
        "missing_shards": plan.missing_shards,
        "duplicates_dropped": plan.dropped,
    }
    return (base.config or {}) if base else {}, extra
