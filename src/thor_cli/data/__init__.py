"""Problem sets: the benchmarks shipped inside thor, and conversion of other data to problem records.

``load_benchmark(name, limit=None)`` streams a shipped benchmark's problem records;
``BENCHMARKS`` is the registry (name -> file, task, licence, rows). ``convert`` /
``Converter`` turn JSONL, parquet, ``datasets`` folders or hub datasets into problem records.
"""

from thor_cli.data.convert import Converter, convert, parse_maps
from thor_cli.data.registry import BENCHMARK_DIR, BENCHMARKS, Benchmark, benchmark_path, load_benchmark

__all__ = ["BENCHMARKS", "BENCHMARK_DIR", "Benchmark", "Converter", "benchmark_path", "convert",
           "load_benchmark", "parse_maps"]
