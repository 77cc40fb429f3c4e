"""``thor grade``: add a ``grade`` to each record (math answers and code tests)."""

from __future__ import annotations

from typing import Annotated

import typer

from thor_cli.cli.options import (
    Config,
    FailOnError,
    Inputs,
    Limit,
    Output,
    Resume,
    ShardOpt,
    examples,
)


def main(
    inputs: Inputs = None,
    output: Output = "-",
    pattern: Annotated[str | None, typer.Option("--pattern", help="Regex for the final answer (group 1 if it has "
                                                "one); default: <answer>, then the last \\boxed{}.",
                                                show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per answer check; slower ones are graded "
                                           "wrong with method 'timeout'.")] = 5.0,
    workers: Annotated[int | None, typer.Option("--workers", help="Grader processes (default: CPUs).",
                                                show_default=False)] = None,
    gold_field: Annotated[str, typer.Option("--gold-field", help="Field holding the gold answer.")] = "answer",
    code_timeout: Annotated[float, typer.Option("--code-timeout", help="Seconds per code-test run.")] = 10.0,
    batch: Annotated[int, typer.Option("--batch", help="Records graded together (memory stays bounded).")] = 256,
    resume: Resume = False,
    shard: ShardOpt = None,
    limit: Limit = None,
    fail_on_error: FailOnError = False,
    config: Config = None,
) -> None:
    """Grade answers: extract each record's final answer and compare it with the gold `answer`.

    Reads records with a gold `answer` and a `trajectory`, `response` or `pred`; writes them back
    with `grade: {correct, pred, gold, method, detail}`. Math answers: exact and numeric fast
    paths, then math-verify, each check bounded in time. Code problems (`task: code`) run their
    tests in the sandbox. A count of correct answers goes to stderr.
    """
    from thor_cli.grading import GradeConfig, Grader
    from thor_cli.log import log
    from thor_cli.records.stream import open_stream

    cfg = GradeConfig(pattern=pattern, timeout=timeout, workers=workers, gold_field=gold_field,
                      code_timeout=code_timeout)
    params = {"pattern": pattern, "timeout": timeout, "gold_field": gold_field,  # what determines results
              "code_timeout": code_timeout}
    correct = total = 0
    with open_stream("grade", inputs, output, resume=resume, shard=shard, limit=limit, config=params,
                     fail_on_error=fail_on_error) as st, Grader(cfg) as grader:
        pending: list[tuple[dict, str]] = []

        def flush() -> None:
            nonlocal correct, total
            grades = grader.grade([r for r, _ in pending])
            for (rec, key), g in zip(pending, grades, strict=True):
                rec["grade"] = g.to_dict()
                correct += g.correct
                total += 1
                st.emit(rec, key)
            pending.clear()

        for rec in st.records:
            key = st.key(rec)
            if st.skip(key):
                continue
            pending.append((rec.data, key))
            if len(pending) >= max(1, batch):
                flush()
        if pending:
            flush()
    if total:
        log.info("grade: %d/%d correct (%.1f%%)", correct, total, 100.0 * correct / total)


main.epilog = examples(  # type: ignore[attr-defined]
    "thor data get math500 --limit 5 | jq -c '.pred = .answer' | thor grade",
    "echo '{\"answer\": \"1000\", \"response\": \"so \\\\boxed{1,000}\"}' | thor grade",
    "thor grade runs/eval.jsonl -o runs/regraded.jsonl --timeout 10",
)
