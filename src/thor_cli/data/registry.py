"""The benchmarks that ship inside thor: a plain registry dict and a streaming loader.

Each benchmark is one JSONL file of problem records in ``data/benchmarks/`` (built by
``python -m thor_cli.data.build_benchmarks``; sources and licences in SOURCES.md beside them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from thor_cli.errors import UsageError
from thor_cli.records.jsonl import iter_records

BENCHMARK_DIR = Path(__file__).parent / "benchmarks"


@dataclass(frozen=True)
class Benchmark:
    file: str
    task: Literal["math", "code"]
    licence: str  # of the data as shipped; SOURCES.md has the detail
    rows: int
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    "math500": Benchmark("math500.jsonl", "math", "MIT", 500, "MATH test subset of PRM800K (levels 1-5)"),
    "gsm8k": Benchmark("gsm8k.jsonl", "math", "MIT", 1319, "GSM8K test, grade-school word problems"),
    "aime24": Benchmark("aime24.jsonl", "math", "MIT (problems (c) MAA)", 30, "AIME 2024 I and II"),
    "aime25": Benchmark("aime25.jsonl", "math", "MIT (problems (c) MAA)", 30, "AIME 2025 I and II"),
    "amc23": Benchmark("amc23.jsonl", "math", "MIT (problems (c) MAA)", 40, "AMC 2023"),
    "minerva_math": Benchmark("minerva_math.jsonl", "math", "MIT (OCW content)", 272,
                              "Minerva Math (MIT OpenCourseWare problems)"),
    "olympiadbench": Benchmark("olympiadbench.jsonl", "math", "MIT", 675,
                               "OlympiadBench, English text-only open-ended competition math"),
    "humaneval": Benchmark("humaneval.jsonl", "code", "MIT", 164, "HumanEval, Python function completion"),
    "mbpp": Benchmark("mbpp.jsonl", "code", "CC-BY-4.0", 427, "MBPP sanitized (hand-verified subset)"),
}


# Generated problem sets (thor data synth NAME): name -> (module with generate(split, n, seed, form)
# and SPLITS, description).
SYNTHETIC: dict[str, tuple[str, str]] = {
    "arithmetic": ("thor_cli.data.arith", "exact multi-digit arithmetic, plain and word problems; splits "
                   "train, test, hard (2-4 operations chained)"),
}


def benchmark_path(name: str) -> Path:
    if name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}", f"choose one of: {', '.join(BENCHMARKS)} (thor data list)")
    return BENCHMARK_DIR / BENCHMARKS[name].file


def load_benchmark(name: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The problem records of benchmark ``name`` in file order, at most ``limit`` of them."""
    path = benchmark_path(name)
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: must be >= 0", None)
    for rec in itertools.islice(iter_records([str(path)]), limit):
        yield rec.data
