"""The benchmarks shipped inside thor: every one loads, has the problem fields, and matches its registry row."""

from __future__ import annotations

from pathlib import Path

import pytest

from thor_cli.data import BENCHMARK_DIR, BENCHMARKS, load_benchmark
from thor_cli.data.build_benchmarks import build
from thor_cli.errors import UsageError
from thor_cli.records import Problem

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks"
EXPECTED = {"math500", "gsm8k", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench", "humaneval", "mbpp"}


def test_registry_names_the_nine_benchmarks() -> None:
    assert set(BENCHMARKS) == EXPECTED
    assert (BENCHMARK_DIR / "SOURCES.md").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_benchmark_loads_with_the_problem_fields(name: str) -> None:
    bench = BENCHMARKS[name]
    records = list(load_benchmark(name))
    assert len(records) == bench.rows
    assert len({r["id"] for r in records}) == bench.rows, "ids are unique"
    for i, rec in enumerate(records):
        p = Problem.from_record(rec, path=name, line=i + 1)
        assert p.id.startswith(f"{name}/")
        assert p.question.strip() and isinstance(rec["answer"], str) and rec["answer"].strip()
        assert p.source == name and p.task == bench.task
        if bench.task == "code":
            assert p.tests and p.entry_point and rec["prompt"]
            assert p.entry_point in rec["prompt"], "the prompt names the function under test"
            assert p.entry_point in p.tests


def test_normalised_values() -> None:
    first = {name: next(load_benchmark(name)) for name in EXPECTED}
    assert first["math500"]["id"] == "math500/test/precalculus/807"
    assert first["math500"]["level"] == 2 and first["math500"]["subject"] == "Precalculus"
    assert first["gsm8k"]["answer"] == "18" and "####" in first["gsm8k"]["solution"]
    assert first["amc23"]["answer"] == "27"
    aime = {r["id"]: r["answer"] for r in load_benchmark("aime24")}
    assert aime["aime24/67"] == "25"  # upstream "025"
    assert first["olympiadbench"]["answer"] == "2" and "answer_type" in first["olympiadbench"]
    assert first["humaneval"]["tests"].rstrip().endswith("check(has_close_elements)")
    assert first["mbpp"]["entry_point"] == "similar_elements"


def test_limit_and_unknown_name() -> None:
    assert len(list(load_benchmark("aime25", limit=3))) == 3
    assert list(load_benchmark("aime25", limit=0)) == []
    with pytest.raises(UsageError, match="math500"):
        list(load_benchmark("math5000"))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"upstream benchmark files not found at {SHARED}")
def test_build_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    counts = build(SHARED, tmp_path)
    assert counts == {n: b.rows for n, b in BENCHMARKS.items()}
    for name, bench in BENCHMARKS.items():
        assert (tmp_path / bench.file).read_bytes() == (BENCHMARK_DIR / bench.file).read_bytes(), name
