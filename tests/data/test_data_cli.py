"""`thor data list / get / convert` end to end through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thor_cli.data.readers import read_rows
from thor_cli.errors import UsageError

THOR = str(Path(sys.executable).parent / "thor")
GSM8K_TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks" / "gsm8k_train.jsonl"


def thor(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([THOR, *args], input=stdin, capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- list / get ----

def test_list_plain_and_json() -> None:
    res = thor("data", "list")
    assert res.returncode == 0
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["name", "rows", "task", "licence"]
    assert any(line.split()[:3] == ["math500", "500", "math"] for line in lines)
    rows = jsonl(thor("data", "list", "--json").stdout)
    assert {r["name"]: r["rows"] for r in rows}["mbpp"] == 427
    assert all({"name", "rows", "task", "licence"} <= set(r) for r in rows)


def test_get_limit_stdout_and_file(tmp_path: Path) -> None:
    res = thor("data", "get", "math500", "--limit", "3")
    assert res.returncode == 0
    recs = jsonl(res.stdout)
    assert [r["source"] for r in recs] == ["math500"] * 3
    out = tmp_path / "he.jsonl"
    assert thor("data", "get", "humaneval", "-o", str(out)).returncode == 0
    recs = jsonl(out.read_bytes())
    assert len(recs) == 164 and recs[0]["task"] == "code"
    assert not (tmp_path / "he.jsonl.part").exists()


def test_get_unknown_name_lists_the_names() -> None:
    res = thor("data", "get", "math50")
    assert res.returncode == 2
    err = res.stderr.decode()
    assert "Error: unknown benchmark 'math50'" in err and "olympiadbench" in err
    assert res.stdout == b""


def test_get_into_closed_pipe_is_quiet() -> None:
    proc = subprocess.run(f"{THOR} data get gsm8k | head -n 1", shell=True, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b""
    assert len(proc.stdout.splitlines()) == 1


# ---- convert ----

@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason=f"{GSM8K_TRAIN} not found")
def test_convert_gsm8k_train() -> None:
    res = thor("data", "convert", str(GSM8K_TRAIN), "--limit", "4")
    assert res.returncode == 0, res.stderr
    recs = jsonl(res.stdout)
    assert [r["id"] for r in recs] == [f"gsm8k_train/{i}" for i in range(4)]
    assert recs[0]["answer"] == "72" and recs[0]["solution"].endswith("#### 72")
    assert all(r["source"] == "gsm8k_train" and r["task"] == "math" for r in recs)


def test_convert_jsonl_stdin_with_maps() -> None:
    rows = [{"prompt": "What is 2+2?", "target": 4.0, "test": "assert f() == 4", "extra": [1]},
            {"prompt": "What is 1/2?", "target": 0.5, "test": "", "extra": None}]
    stdin = "".join(json.dumps(r) + "\n" for r in rows).encode()
    res = thor("data", "convert", "--map", "question=prompt", "--map", "answer=target", "--map", "tests=test",
               "--source", "toy", stdin=stdin)
    assert res.returncode == 0, res.stderr
    recs = jsonl(res.stdout)
    assert recs[0] == {"id": "toy/0", "question": "What is 2+2?", "answer": "4", "source": "toy", "task": "math",
                       "tests": "assert f() == 4", "extra": [1]}
    assert recs[1]["answer"] == "0.5" and recs[1]["id"] == "toy/1"


def test_convert_parquet_json_array_and_ids(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": ["p0", "p1", "p2"], "sol": [27.0, 3.5, 1.0], "uid": [10, 11, 12],
                             "level": [1, 2, 3]}), tmp_path / "set.parquet")
    res = thor("data", "convert", str(tmp_path / "set.parquet"), "--question-field", "problem",
               "--answer-field", "sol", "--id-field", "uid")
    assert res.returncode == 0, res.stderr
    recs = jsonl(res.stdout)
    assert [(r["id"], r["question"], r["answer"], r["level"]) for r in recs] == [
        ("set/10", "p0", "27", 1), ("set/11", "p1", "3.5", 2), ("set/12", "p2", "1", 3)]
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"question": "q", "answer": ["x"], "id": "a-1"}]))
    out = tmp_path / "out.jsonl"
    assert thor("data", "convert", str(arr), "-o", str(out)).returncode == 0
    assert jsonl(out.read_bytes()) == [{"id": "a-1", "question": "q", "answer": "x", "source": "arr", "task": "math"}]


def test_convert_datasets_folder(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_list([{"question": "q0", "answer": "1"}, {"question": "q1", "answer": "2"}])
    ds.save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "two"))
    recs = jsonl(thor("data", "convert", str(tmp_path / "one")).stdout)
    assert [(r["id"], r["answer"]) for r in recs] == [("one/0", "1"), ("one/1", "2")]
    with pytest.raises(UsageError, match="--split"):  # library call: one subprocess fewer
        list(read_rows(str(tmp_path / "two")))
    recs = jsonl(thor("data", "convert", str(tmp_path / "two"), "--split", "test").stdout)
    assert [r["question"] for r in recs] == ["q0"]


def test_convert_hub_name_offline_is_a_clear_error() -> None:
    res = thor("data", "convert", "openai/gsm8k", env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2 and "offline" in res.stderr.decode()


@pytest.mark.parametrize(("rows", "args", "where"), [
    ([{"question": "a", "answer": "1"}, {"question": "b"}], [], ':2: field "answer": missing'),
    ([{"question": "a", "answer": "1"}, {"question": "b", "answer": None}], [], ':2: field "answer": null'),
    ([{"question": "a", "answer": "1"}, {"question": 7, "answer": "1"}], [], ':2: field "question": expected'),
    ([{"question": "a", "answer": {"x": 1}}], [], ':1: field "answer": expected a string or number'),
    ([{"q": "a", "answer": "1"}], ["--question-field", "problem"], ':1: field "problem": missing'),
    ([{"text": "a", "answer": "1"}, {"answer": "2"}], [], ':2: field "question": missing'),
    ([{"question": "a", "answer": "1", "uid": [1]}], ["--id-field", "uid"], ':1: field "uid": expected'),
])
def test_convert_errors_name_file_line_field(tmp_path: Path, rows: list[dict], args: list[str], where: str) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out.jsonl"
    res = thor("data", "convert", str(src), *args, "-o", str(out))
    assert res.returncode == 1
    assert f"Error: {src}{where}" in res.stderr.decode()
    assert not out.exists(), "no half-written output under the final name"


def test_convert_bad_json_and_bad_parquet(tmp_path: Path) -> None:
    src = tmp_path / "torn.jsonl"
    src.write_bytes(b'{"question": "a", "answer": "1"}\n{"question": "b", "ans')
    res = thor("data", "convert", str(src))
    assert res.returncode == 1 and f"{src}:2:" in res.stderr.decode()
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet")
    res = thor("data", "convert", str(fake))
    assert res.returncode == 1 and f"Error: {fake}: cannot read as parquet" in res.stderr.decode()


def test_convert_unlabelled_rows(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "mixed.jsonl", [{"question": "a", "answer": "1"}, {"question": "b"},
                                                  {"question": "c", "answer": None}])
    res = thor("data", "convert", str(src), "--skip-unlabelled")
    assert [r["question"] for r in jsonl(res.stdout)] == ["a"]
    assert "2 rows without an answer skipped" in res.stderr.decode()
    recs = jsonl(thor("data", "convert", str(src), "--unlabelled").stdout)
    assert [("answer" in r) for r in recs] == [True, False, False]
    assert thor("data", "convert", str(src), "--unlabelled", "--skip-unlabelled").returncode == 2
    assert thor("data", "convert", str(src), "--map", "broken").returncode == 2


def test_help_of_every_data_command_has_examples() -> None:
    for cmd in ("list", "get", "convert"):
        res = thor("data", cmd, "--help")
        assert res.returncode == 0 and "Examples" in res.stdout.decode() and "|" in res.stdout.decode()
