"""Streaming JSONL: parsing errors name file and line, whole lines, resume drops torn tails."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from thor_cli.errors import InputError, UsageError
from thor_cli.records import jsonl
from thor_cli.records.jsonl import OutputSink, get_field, iter_records
from thor_cli.records.keys import content_key
from thor_cli.records.shard import parse_shard, shard_from_env


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_reads_several_files_in_order_and_skips_blank_lines(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", b'{"id": 1}\n\n{"id": 2}\n')
    b = write(tmp_path / "b.jsonl", b'{"id": 3}')  # no trailing newline but valid
    recs = list(iter_records([a, b]))
    assert [r.data["id"] for r in recs] == [1, 2, 3]
    assert [(Path(r.path).name, r.line) for r in recs] == [("a.jsonl", 1), ("a.jsonl", 3), ("b.jsonl", 1)]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"id": 1}\n{"id": 2, "q": "tru', "truncated"),
        (b'{"id": 1}\n{"id": \n{"id": 3}\n', "not valid JSON"),
        (b'{"id": 1}\n[1, 2]\n', "expected a JSON object"),
        (b'{"id": 1}\n{"q": "\xff\xfe"}\n', "not valid UTF-8"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, content: bytes, needle: str) -> None:
    p = write(tmp_path / "bad.jsonl", content)
    with pytest.raises(InputError) as err:
        list(iter_records([p]))
    assert f"{p}:2:" in str(err.value)
    assert needle in str(err.value)


def test_overlong_line_is_an_error_not_an_oom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1024)
    p = write(tmp_path / "big.jsonl", b'{"q": "' + b"x" * 5000 + b'"}\n')
    with pytest.raises(InputError, match="longer than"):
        list(iter_records([p]))


def test_missing_file_and_folder_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        list(iter_records([str(tmp_path / "nope.jsonl")]))
    with pytest.raises(UsageError, match="folder"):
        list(iter_records([str(tmp_path)]))


def test_get_field_names_field_and_type() -> None:
    with pytest.raises(InputError, match=r'x.jsonl:7: field "answer": missing'):
        get_field({"q": 1}, "answer", str, path="x.jsonl", line=7)
    with pytest.raises(InputError, match=r'field "answer": expected a string, got int'):
        get_field({"answer": 3}, "answer", str, path="x.jsonl", line=7)
    with pytest.raises(InputError, match="got bool"):
        get_field({"n": True}, "n", int)
    assert get_field({"n": 3}, "n", (int, float)) == 3


def test_content_key_is_canonical_and_ignores_earlier_keys() -> None:
    a = {"id": "1", "question": "q", "meta": {"b": 1, "a": 2}}
    b = {"meta": {"a": 2, "b": 1}, "question": "q", "id": "1", "keys": {"exec": "abc"}}
    assert content_key(a, {"t": 1}, stage="eval") == content_key(b, {"t": 1}, stage="eval")
    assert content_key(a, {"t": 1}, stage="eval") != content_key(a, {"t": 2}, stage="eval")
    assert content_key(a, stage="eval", sample=0) != content_key(a, stage="eval", sample=1)
    assert content_key(a, stage="eval") != content_key(a, stage="grade")


def test_sink_writes_part_then_renames(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputSink(str(out)) as sink:
        sink.write({"a": 1})
        assert not out.exists() and (tmp_path / "out.jsonl.part").exists()
    assert out.read_bytes() == b'{"a":1}\n'
    assert not (tmp_path / "out.jsonl.part").exists()


def test_sink_keeps_part_on_failure_and_resume_drops_torn_tail(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), OutputSink(str(out), stage="s") as sink:
        sink.write({"keys": {"s": "k1"}, "v": 1})
        sink.write({"keys": {"s": "k2"}, "v": 2})
        raise RuntimeError("boom")
    assert not out.exists()
    part = tmp_path / "out.jsonl.part"
    with open(part, "ab") as f:
        f.write(b'{"keys": {"s": "k3"}, "v"')  # a torn line, as after SIGKILL
    with OutputSink(str(out), resume=True, stage="s") as sink:
        assert sink.done == {"k1", "k2"}
        assert sink.dropped_bytes > 0
        sink.write({"keys": {"s": "k3"}, "v": 3})
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["v"] for x in lines] == [1, 2, 3]


def test_resume_continues_a_finished_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputSink(str(out), stage="s") as sink:
        sink.write({"keys": {"s": "k1"}})
    with OutputSink(str(out), resume=True, stage="s") as sink:
        assert sink.done == {"k1"}
    assert out.read_bytes().count(b"\n") == 1


def test_resume_needs_a_file() -> None:
    with pytest.raises(UsageError, match="--resume needs an output file"):
        OutputSink("-", resume=True)


def test_shard_parsing_and_slurm_env() -> None:
    assert parse_shard("2/3").owns(5) and not parse_shard("2/3").owns(4)
    for bad in ["3/3", "x", "1/0", "-1/2"]:
        with pytest.raises(UsageError):
            parse_shard(bad)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert str(shard_from_env(env)) == "2/4"
    assert shard_from_env({}) is None
    stepped = {"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "10",
               "SLURM_ARRAY_TASK_COUNT": "4"}  # --array=0-30:10
    assert str(shard_from_env(stepped)) == "2/4"


def test_resume_keeps_the_finished_file_until_the_resumed_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputSink(str(out), stage="s") as sink:
        sink.write({"keys": {"s": "k1"}})
    before = out.read_bytes()
    with pytest.raises(RuntimeError), OutputSink(str(out), resume=True, stage="s") as sink:
        sink.write({"keys": {"s": "k2"}})
        raise RuntimeError("the resumed run fails")
    assert out.read_bytes() == before, "a failed resume must not take the finished file away"


def test_resume_retries_failed_records_without_duplicating_them(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputSink(str(out), stage="s") as sink:
        sink.write({"keys": {"s": "ok"}, "v": 1})
        sink.write({"keys": {"s": "bad"}, "v": 2, "error": "BackendError: server down"})
    with OutputSink(str(out), resume=True, stage="s") as sink:
        assert sink.done == {"ok"} and sink.retried == 1
        sink.write({"keys": {"s": "bad"}, "v": 2, "error": None})
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [(x["v"], x.get("error")) for x in lines] == [(1, None), (2, None)]
