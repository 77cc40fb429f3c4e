"""open_stream: --limit, --shard, --resume after SIGKILL, manifests, failures as data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from thor_cli.errors import ThorError
from thor_cli.records.stream import open_stream

# A tiny stage that copies records slowly, so the test can kill it midway.
STAGE = r"""
import sys, time
from thor_cli.records.stream import open_stream
inp, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
with open_stream("copy", [inp], out, resume=resume, config={"k": 1}) as st:
    for rec in st.records:
        key = st.key(rec)
        if st.skip(key):
            continue
        time.sleep(0.02)
        st.emit(dict(rec.data, seen=True), key)
"""


def make_input(path: Path, n: int) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"id": i, "question": f"q{i}"}) + b"\n" for i in range(n)))
    return path


def run_stage(tmp_path: Path, inp: Path, out: Path, resume: bool) -> subprocess.Popen[bytes]:
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    return subprocess.Popen([sys.executable, str(script), str(inp), str(out), "1" if resume else "0"],
                            stderr=subprocess.PIPE)


def test_sigkill_midway_then_resume_gives_every_record_exactly_once(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", 60)
    out = tmp_path / "out.jsonl"
    part = tmp_path / "out.jsonl.part"
    proc = run_stage(tmp_path, inp, out, resume=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if part.exists() and part.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run must not leave a file under the final name"
    with open(part, "ab") as f:  # as if the kill tore the last write
        f.write(b'{"id": 999, "quest')
    proc = run_stage(tmp_path, inp, out, resume=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    ids = [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert sorted(ids) == list(range(60))
    assert b"torn last line" in err


def test_limit_then_shards_partition_the_input(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", 23)
    seen: list[int] = []
    for i in range(3):
        out = tmp_path / f"s{i}.jsonl"
        with open_stream("copy", [str(inp)], str(out), shard=f"{i}/3", limit=20) as st:
            for rec in st.records:
                st.emit(rec.data, st.key(rec))
        seen += [orjson.loads(x)["id"] for x in out.read_bytes().splitlines()]
    assert sorted(seen) == list(range(20))


def test_manifest_records_config_and_argv(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", 2)
    out = tmp_path / "o.jsonl"
    with open_stream("copy", [str(inp)], str(out), config={"temperature": 0.6}) as st:
        for rec in st.records:
            st.emit(rec.data, st.key(rec))
    manifest = orjson.loads((tmp_path / "o.jsonl.manifest.json").read_bytes())
    assert manifest["stage"] == "copy" and manifest["config"] == {"temperature": 0.6}
    assert len(manifest["config_hash"]) == 16 and "thor_version" in manifest


def test_failed_records_are_counted_and_fail_on_error_raises(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", 3)
    out = tmp_path / "o.jsonl"
    with pytest.raises(ThorError, match="1 records failed"):
        with open_stream("copy", [str(inp)], str(out), fail_on_error=True) as st:
            for rec in st.records:
                st.emit(dict(rec.data, error="boom" if rec.data["id"] == 1 else None), st.key(rec))
    assert out.exists(), "records are complete even when some failed: the file is committed"
    assert out.read_bytes().count(b"\n") == 3


def test_resume_with_another_config_is_refused(tmp_path: Path) -> None:
    from thor_cli.errors import UsageError

    inp = make_input(tmp_path / "in.jsonl", 2)
    out = tmp_path / "o.jsonl"
    with open_stream("copy", [str(inp)], str(out), config={"temperature": 0.6}) as st:
        for rec in st.records:
            st.emit(rec.data, st.key(rec))
    with pytest.raises(UsageError, match="changed: temperature"):
        with open_stream("copy", [str(inp)], str(out), resume=True, config={"temperature": 1.0}):
            pass
    with open_stream("copy", [str(inp)], str(out), resume=True, config={"temperature": 0.6}) as st:
        assert sum(st.skip(st.key(r)) for r in st.records) == 2


def test_shard_unit_keeps_related_records_together(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"".join(orjson.dumps({"i": i, "session": f"s{i % 5}"}) + b"\n" for i in range(40)))
    seen: dict[str, set[int]] = {}
    for n in range(3):
        with open_stream("x", [str(inp)], "-", shard=f"{n}/3", shard_unit=lambda r: r.get("session")) as st:
            for rec in st.records:
                seen.setdefault(rec.data["session"], set()).add(n)
    assert len(seen) == 5 and all(len(shards) == 1 for shards in seen.values())
