"""`thor data merge` end to end: shards of a real `thor grade` run merged back by key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

THOR = str(Path(sys.executable).parent / "thor")


def thor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([THOR, *args], capture_output=True, timeout=120, cwd=cwd, env={**os.environ})


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


ROWS = [{"id": f"p{i}", "answer": str(i), "pred": str(i if i % 3 else i + 1)} for i in range(9)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """preds.jsonl graded in two shards (0/2, 1/2), and shard 0 again with another --timeout
    (built once; tests only read these files)."""
    tmp_path = tmp_path_factory.mktemp("shards")
    src = tmp_path / "preds.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = {}
    for name, args in {"s0": ["--shard", "0/2"], "s1": ["--shard", "1/2"],
                       "s0_t9": ["--shard", "0/2", "--timeout", "9"]}.items():
        out[name] = tmp_path / f"{name}.jsonl"
        res = thor("grade", str(src), "--workers", "1", *args, "-o", str(out[name]))
        assert res.returncode == 0, res.stderr.decode()
    return out


def test_two_shards_merge_to_every_record_once(shards: dict[str, Path], tmp_path: Path) -> None:
    assert 0 < len(jsonl(shards["s0"])) < len(ROWS)  # the shards really split the input
    merged = tmp_path / "merged.jsonl"
    res = thor("data", "merge", str(shards["s1"]), str(shards["s0"]), "-o", str(merged), "--strict")
    assert res.returncode == 0, res.stderr.decode()
    recs = jsonl(merged)
    assert sorted(r["id"] for r in recs) == sorted(r["id"] for r in ROWS)
    assert [r["grade"]["correct"] for r in sorted(recs, key=lambda r: int(r["id"][1:]))] == [
        bool(i % 3) for i in range(9)]
    assert [r["id"] for r in recs[:len(jsonl(shards["s1"]))]] == [r["id"] for r in jsonl(shards["s1"])]  # file order
    manifest = json.loads((tmp_path / "merged.jsonl.manifest.json").read_text())
    shard_manifest = json.loads(Path(f"{shards['s0']}.manifest.json").read_text())
    assert manifest["stage"] == "grade" and manifest["shard"] is None and manifest["missing_shards"] == []
    assert manifest["config_hash"] == shard_manifest["config_hash"]
    assert not (tmp_path / "merged.jsonl.part").exists()
    assert "duplicate" not in res.stderr.decode() and "missing" not in res.stderr.decode()


def test_resume_into_the_merged_file_finds_every_record_done(shards: dict[str, Path], tmp_path: Path) -> None:
    merged = tmp_path / "merged.jsonl"
    assert thor("data", "merge", str(shards["s0"]), str(shards["s1"]), "-o", str(merged)).returncode == 0
    before = merged.read_bytes()
    res = thor("grade", str(shards["s0"].parent / "preds.jsonl"), "--workers", "1", "--resume", "-o", str(merged))
    assert res.returncode == 0, res.stderr.decode()
    assert f"{len(ROWS)} already done" in res.stderr.decode() and merged.read_bytes() == before


def test_duplicates_across_files_are_dropped_and_counted(shards: dict[str, Path], tmp_path: Path) -> None:
    again = tmp_path / "s0_again.jsonl"
    again.write_bytes(shards["s0"].read_bytes())
    Path(f"{again}.manifest.json").write_bytes(Path(f"{shards['s0']}.manifest.json").read_bytes())
    res = thor("data", "merge", str(shards["s0"]), str(shards["s1"]), str(again))
    assert res.returncode == 0, res.stderr.decode()
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(recs) == len(ROWS) and len({r["keys"]["grade"] for r in recs}) == len(ROWS)
    n0 = len(jsonl(shards["s0"]))
    assert f"{n0} duplicate records dropped ({n0} from {again})" in res.stderr.decode()


def test_a_successful_copy_wins_over_a_failed_one(shards: dict[str, Path], tmp_path: Path) -> None:
    rows = jsonl(shards["s0"])
    failed = tmp_path / "s0_failed.jsonl"
    failed.write_text("".join(json.dumps({**r, "error": "boom", "grade": None} if i == 1 else r) + "\n"
                              for i, r in enumerate(rows)))
    Path(f"{failed}.manifest.json").write_bytes(Path(f"{shards['s0']}.manifest.json").read_bytes())
    res = thor("data", "merge", str(failed), str(shards["s0"]), str(shards["s1"]))
    assert res.returncode == 0, res.stderr.decode()
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(recs) == len(ROWS)
    winner = next(r for r in recs if r["id"] == rows[1]["id"])
    assert "error" not in winner and winner["grade"] is not None
    assert "1 failed copies gave way to successful ones" in res.stderr.decode()


def test_missing_shard_is_reported_and_strict_fails(shards: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    res = thor("data", "merge", str(shards["s0"]), "-o", str(out))
    assert res.returncode == 0
    assert "missing shard(s) 1/2" in res.stderr.decode()
    assert len(jsonl(out)) == len(jsonl(shards["s0"]))
    assert json.loads(Path(f"{out}.manifest.json").read_text())["missing_shards"] == ["1/2"]
    strict = tmp_path / "strict.jsonl"
    res = thor("data", "merge", str(shards["s0"]), "--strict", "-o", str(strict))
    assert res.returncode == 1
    assert "Error: --strict: missing shard(s) 1/2" in res.stderr.decode()
    assert not strict.exists() and not Path(f"{strict}.part").exists()


def test_mixed_configs_are_reported_and_strict_fails(shards: dict[str, Path]) -> None:
    res = thor("data", "merge", str(shards["s0_t9"]), str(shards["s1"]))
    assert res.returncode == 0
    assert "different configs" in res.stderr.decode() and "timeout" in res.stderr.decode()
    res = thor("data", "merge", str(shards["s0_t9"]), str(shards["s1"]), "--strict")
    assert res.returncode == 1 and res.stdout == b""
    assert "Error: --strict: the inputs were made with different configs" in res.stderr.decode()


def test_record_without_key_names_file_and_line(shards: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    rows = jsonl(shards["s1"])
    rows[1].pop("keys")
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = thor("data", "merge", str(bad), "--stage", "grade")
    assert res.returncode == 1
    assert f'Error: {bad}:2: field "keys": missing keys.grade' in res.stderr.decode()


def test_usage_errors(shards: dict[str, Path], tmp_path: Path) -> None:
    res = thor("data", "merge", str(shards["s0"]), "-o", str(shards["s0"]))
    assert res.returncode == 2 and "also an input" in res.stderr.decode()
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(shards["s1"].read_bytes())
    res = thor("data", "merge", str(plain))
    assert res.returncode == 2 and "--stage" in res.stderr.decode()
    res = thor("data", "merge", str(plain), "--stage", "grade")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == len(jsonl(plain))
    assert "has no manifest" in res.stderr.decode()
