"""``thor grade``: add a ``grade`` to each record (math answers and code tests)."""

from __future__ import annotations

from typing import Annotated, Any

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
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model for the answers the rules cannot "
                                              "decide (prose, unparseable, timeouts): a cached name, folder, HF "
                                              "id or served model.", show_default=False)] = None,
    judge_backend: Annotated[str, typer.Option("--judge-backend", help="Judge backend: hf | vllm | openai | "
                                               "scripted.")] = "hf",
    judge_base_url: Annotated[str | None, typer.Option("--judge-base-url", help="openai judge: the server's URL.",
                                                       show_default=False)] = None,
    judge_api_key: Annotated[str | None, typer.Option("--judge-api-key", envvar="OPENAI_API_KEY",
                                                      help="openai judge: API key.", show_default=False)] = None,
    judge_cache: Annotated[str | None, typer.Option("--judge-cache", help="JSONL cache of verdicts (default: "
                                                    "$THOR_HOME/judge_cache.jsonl); a rerun asks nothing twice.",
                                                    show_default=False)] = None,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="Tokens of the judge's reply.")] = 256,
    judge_option: Annotated[list[str] | None, typer.Option("--judge-option", help="KEY=VALUE passed to the judge "
                                                           "backend (VALUE read as JSON when it parses), e.g. "
                                                           "dtype=bfloat16; repeatable.", show_default=False)] = None,
    question_field: Annotated[str, typer.Option("--question-field", help="Field with the question the judge "
                                                "sees.")] = "question",
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

    With `--judge MODEL`, the answers the rules cannot decide (method unparsed, string, timeout or
    error) go to an LLM judge run through the rollout engine; those grades get method `judge` and
    `judge: {verdict, reason, model}`. Verdicts are cached (`--judge-cache`).
    """
    from collections.abc import Iterator
    from contextlib import ExitStack

    from thor_cli.grading import GradeConfig, Grader, graded_in_batches
    from thor_cli.log import log
    from thor_cli.records.stream import open_stream

    cfg = GradeConfig(pattern=pattern, timeout=timeout, workers=workers, gold_field=gold_field,
                      code_timeout=code_timeout)
    params: dict[str, Any] = {"pattern": pattern, "timeout": timeout, "gold_field": gold_field,  # what determines
                              "code_timeout": code_timeout}                                  # the results
    if judge is not None:
        from thor_cli.judge import PROMPT_VERSION

        params.update(judge=judge, judge_backend=judge_backend, judge_prompt=PROMPT_VERSION,
                      question_field=question_field)
    correct = total = judged = 0
    with ExitStack() as stack:
        st = stack.enter_context(open_stream("grade", inputs, output, resume=resume, shard=shard, limit=limit,
                                             config=params, fail_on_error=fail_on_error))
        grader = stack.enter_context(Grader(cfg))
        grade_fn = grader.grade
        if judge is not None:
            from thor_cli.backends import parse_backend_options
            from thor_cli.judge import CascadeGrader, Judge, JudgeCache

            opts = parse_backend_options(judge_option or [], flag="--judge-option")
            if judge_backend == "openai":
                opts.setdefault("base_url", judge_base_url)
                opts.setdefault("api_key", judge_api_key)
            the_judge = stack.enter_context(Judge.load(judge_backend, judge, backend_options=opts,
                                                       cache=JudgeCache(judge_cache), max_tokens=judge_max_tokens))
            grade_fn = CascadeGrader(grader, the_judge, question_field=question_field).grade
        def todo() -> Iterator[tuple[dict, str]]:
            for rec in st.records:
                key = st.key(rec)
                if not st.skip(key):
                    yield rec.data, key

        for (rec, key), g in graded_in_batches(todo(), grade_fn, record=lambda x: x[0], batch=batch):
            rec["grade"] = g.to_dict()
            correct += g.correct
            judged += g.method == "judge"
            total += 1
            st.emit(rec, key)
        if judge is not None:
            js = the_judge.stats
            log.info("grade: judge %s decided %d answers (asked %d, cached %d, invalid replies %d)", judge, judged,
                     js["asked"], js["cached"], js["invalid"])
    if total:
        log.info("grade: %d/%d correct (%.1f%%)", correct, total, 100.0 * correct / total)



main.epilog = examples(  # type: ignore[attr-defined]
    "thor data get math500 --limit 5 | jq -c '.pred = .answer' | thor grade",
    "echo '{\"answer\": \"1000\", \"response\": \"so \\\\boxed{1,000}\"}' | thor grade",
    "thor grade runs/eval.jsonl -o runs/regraded.jsonl --timeout 10",
    "thor grade runs/eval.jsonl --judge Qwen/Qwen2.5-7B-Instruct --judge-backend openai "
    "--judge-base-url http://localhost:8000/v1",
)
