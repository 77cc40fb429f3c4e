"""Build the packaged benchmark files: normalise upstream JSONL into problem records.

Run once when the sources change, and commit the output (src/thor_cli/data/benchmarks/)::

    python -m thor_cli.data.build_benchmarks ../shared/data/benchmarks

SRC_DIR holds the upstream files described in its SOURCES.md. Each benchmark has one
normaliser below that maps an upstream row to a problem record (id, question, answer, source,
task, and for code: tests, entry_point, prompt) and keeps useful upstream fields under their
names. The row counts are checked against the registry (thor_cli.data.registry.BENCHMARKS).
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from thor_cli.data.registry import BENCHMARK_DIR, BENCHMARKS

Row = dict[str, Any]


def _rows(path: Path) -> Iterator[Row]:
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield orjson.loads(raw)


def _number(x: float | int | str) -> str:
    """27.0 -> "27"; 2.5 -> "2.5"; strings unchanged."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def math500(r: Row, i: int) -> Row:
    uid = r["unique_id"].removesuffix(".json")  # "test/precalculus/807"
    return {"id": f"math500/{uid}", "question": r["problem"], "answer": r["answer"],
            "solution": r["solution"], "subject": r["subject"], "level": r["level"], "unique_id": r["unique_id"]}


def gsm8k(r: Row, i: int) -> Row:
    return {"id": f"gsm8k/test/{i}", "question": r["question"], "answer": r["final_answer"],
            "solution": r["answer"]}


def aime24(r: Row, i: int) -> Row:
    # Upstream answers are zero-padded ("025"); AIME answers are integers 0-999.
    return {"id": f"aime24/{r['id']}", "question": r["problem"], "answer": str(int(r["answer"])),
            "solution": r["solution"], "url": r["url"]}


def aime25(r: Row, i: int) -> Row:
    return {"id": f"aime25/{r['id']}", "question": r["problem"], "answer": str(int(r["answer"])),
            "competition": r["competition"], "problem_idx": r["problem_idx"]}


def amc23(r: Row, i: int) -> Row:
    return {"id": f"amc23/{r['id']}", "question": r["problem"], "answer": _number(r["answer"]), "url": r["url"]}


def minerva_math(r: Row, i: int) -> Row:
    return {"id": f"minerva_math/{r['idx']}", "question": r["problem"], "answer": r["answer"],
            "solution": r["solution"], "type": r["type"]}


def olympiadbench(r: Row, i: int) -> Row:
    answers = r["final_answer"]
    assert len(answers) == 1, f"olympiadbench {r['id']}: {len(answers)} final answers"
    return {"id": f"olympiadbench/{r['id']}", "question": r["question"], "answer": answers[0],
            "solution": "\n\n".join(r["solution"]), "subfield": r["subfield"], "unit": r["unit"],
            "answer_type": r["answer_type"], "is_multiple_answer": r["is_multiple_answer"]}


def humaneval(r: Row, i: int) -> Row:
    n = r["task_id"].split("/")[1]
    ep = r["entry_point"]
    question = (f"Complete the Python function `{ep}` below. Keep its signature and return the whole "
                f"function.\n\n```python\n{r['prompt']}```")
    return {"id": f"humaneval/{n}", "question": question, "answer": r["prompt"] + r["canonical_solution"],
            "task": "code", "prompt": r["prompt"], "entry_point": ep,
            # `test` defines check(candidate); calling it is what runs the asserts.
            "tests": f"{r['test'].rstrip()}\n\n\ncheck({ep})\n", "task_id": r["task_id"]}


def _called_function(code: str, test: str) -> str:
    """The function of the reference solution that the tests call."""
    with warnings.catch_warnings():  # some reference solutions have invalid escapes ("\w")
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    defs = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for name in defs:
        if re.search(rf"\b{re.escape(name)}\s*\(", test):
            return name
    raise ValueError(f"no function of the solution is called in {test!r}")


def mbpp(r: Row, i: int) -> Row:
    example = r["test_list"][0]
    prompt = f"{r['prompt'].strip()}\nYour code should pass this test:\n{example}"
    tests = "\n".join([*r["test_imports"], *r["test_list"]]) + "\n"
    return {"id": f"mbpp/{r['task_id']}", "question": prompt, "answer": r["code"], "task": "code",
            "prompt": prompt, "entry_point": _called_function(r["code"], example), "tests": tests,
            "task_id": r["task_id"], "test_list": r["test_list"], "test_imports": r["test_imports"]}


# benchmark name -> (upstream file in SRC_DIR, normaliser)
NORMALISERS: dict[str, tuple[str, Callable[[Row, int], Row]]] = {
    "math500": ("math500.jsonl", math500),
    "gsm8k": ("gsm8k_test.jsonl", gsm8k),
    "aime24": ("aime24.jsonl", aime24),
    "aime25": ("aime25.jsonl", aime25),
    "amc23": ("amc23.jsonl", amc23),
    "minerva_math": ("minerva_math.jsonl", minerva_math),
    "olympiadbench": ("olympiadbench.jsonl", olympiadbench),
    "humaneval": ("humaneval.jsonl", humaneval),
    "mbpp": ("mbpp_sanitized.jsonl", mbpp),
}


def build(src: Path, out: Path = BENCHMARK_DIR) -> dict[str, int]:
    """Normalise every benchmark from ``src`` into ``out``; returns rows written per benchmark."""
    counts: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    for name, (fname, fn) in NORMALISERS.items():
        bench = BENCHMARKS[name]
        records = []
        for i, row in enumerate(_rows(src / fname)):
            rec = fn(row, i)
            # Fixed key order: the problem fields first, then the kept upstream fields.
            head = {"id": rec.pop("id"), "question": rec.pop("question"), "answer": rec.pop("answer"),
                    "source": name, "task": rec.pop("task", bench.task)}
            records.append({**head, **rec})
        ids = [r["id"] for r in records]
        if len(set(ids)) != len(ids):
            raise SystemExit(f"{name}: duplicate ids")
        if len(records) != bench.rows:
            raise SystemExit(f"{name}: {len(records)} rows, registry says {bench.rows}")
        tmp = out / f".{bench.file}.tmp"
        tmp.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
        tmp.replace(out / bench.file)
        counts[name] = len(records)
    return counts


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        raise SystemExit("usage: python -m thor_cli.data.build_benchmarks SRC_DIR [OUT_DIR]")
    out = Path(args[1]) if len(args) == 2 else BENCHMARK_DIR
    for name, n in build(Path(args[0]), out).items():
        sys.stderr.write(f"{name}: {n} rows -> {out / BENCHMARKS[name].file}\n")


if __name__ == "__main__":
    main()
