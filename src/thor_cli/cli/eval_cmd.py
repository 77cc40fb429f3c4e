"""``thor eval``: evaluate a model with tools on benchmarks (or problems on stdin); ``--grade-only``."""

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
    Seed,
    ShardOpt,
    examples,
    given_on_line,
)
from thor_cli.cli.rollout_opts import (
    ApiKey,
    BackendName,
    BackendOption,
    BackoffTokens,
    BaseUrl,
    CellMemory,
    CellTimeout,
    Concurrency,
    D,
    MaxCorrections,
    MaxOutputChars,
    MaxToolCalls,
    NoTools,
    ProtocolName,
    SandboxUrl,
    SearchCorpus,
    SearchUrl,
    SelfCorrect,
    SystemPrompt,
    Temperature,
    TopK,
    TopP,
    Workers,
)

# The paper's evaluation settings (section 4) are presets/eval-paper.yaml; --reasoning picks the
# longer context wherever --max-tokens is not on the line.
DEFAULT_SAMPLES, REASONING_MAX_TOKENS = 4, 16384


def main(
    ctx: typer.Context,
    inputs: Inputs = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model: a cached name (thor models list), "
                                              "a checkpoint folder or an HF id.", show_default=False)] = None,
    benchmark: Annotated[list[str] | None, typer.Option("--benchmark", "-b", help="A shipped benchmark "
                                                        "(thor data list); repeatable. Without it, problems "
                                                        "are read from the inputs.", show_default=False)] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-k", help="Samples per problem (k). Default 4 "
                                                "(paper).", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="'paper': avg@4, T=0.6, top_p=1, 4096 tokens "
                                               "(16384 with --reasoning), 10 tool calls; flags on the line win.",
                                               show_default=False)] = None,
    reasoning: Annotated[bool, typer.Option("--reasoning", help="A reasoning (thinking) model: the paper's "
                                            "16384-token context.")] = False,
    no_tools: NoTools = D.no_tools,
    backend: BackendName = D.backend,
    backend_option: BackendOption = None,
    protocol: ProtocolName = D.protocol,
    temperature: Temperature = D.temperature,
    top_p: TopP = D.top_p,
    top_k: TopK = D.top_k,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", show_default=False,
                                                   help="Completion tokens, tool output included (default "
                                                   "4096; 16384 with --reasoning).")] = None,
    max_tool_calls: MaxToolCalls = D.max_tool_calls,
    self_correct: SelfCorrect = D.self_correct,
    max_corrections: MaxCorrections = D.max_corrections,
    backoff_tokens: BackoffTokens = D.backoff_tokens,
    max_output_chars: MaxOutputChars = D.max_output_chars,
    system_prompt: SystemPrompt = D.system_prompt,
    timeout: CellTimeout = D.timeout,
    memory: CellMemory = D.memory,
    workers: Workers = D.workers,
    sandbox_url: SandboxUrl = D.sandbox_url,
    base_url: BaseUrl = D.base_url,
    api_key: ApiKey = D.api_key,
    search_corpus: SearchCorpus = D.search_corpus,
    search_url: SearchUrl = D.search_url,
    concurrency: Concurrency = D.concurrency,
    keep_ids: Annotated[bool, typer.Option("--keep-ids/--drop-ids", help="Keep token ids, masks and log-probs "
                                           "in the records (off for eval: records stay small).")] = False,
    grade_only: Annotated[bool, typer.Option("--grade-only", help="No model: re-grade existing eval records "
                                             "from the inputs and recompute the summary.")] = False,
    summary: Annotated[str | None, typer.Option("--summary", help="Write the summary (JSON) to this file.",
                                                show_default=False)] = None,
    grade_timeout: Annotated[float, typer.Option("--grade-timeout", help="Seconds per answer check.")] = 5.0,
    output: Output = "-",
    seed: Seed = D.seed,
    resume: Resume = False,
    shard: ShardOpt = None,
    limit: Limit = None,
    config: Config = None,
    fail_on_error: FailOnError = False,
) -> None:
    """Evaluate: k samples per problem through the rollout engine, graded, one record per sample.

    Prints a summary per benchmark on stderr (avg@k, unbiased pass@k, maj@k, THOR's self-rewarded
    best-of-k by cell execution, tool calls, cell success rate, self-corrections, tokens, wall
    time); --summary writes it as JSON. Reads all records for the summary (bounded: only what
    metrics need is kept). --limit is per benchmark.
    """
    import sys

    from thor_cli.backends import parse_backend_options
    from thor_cli.evaluate import EvalOptions, run_file
    from thor_cli.grading import GradeConfig
    from thor_cli.records.jsonl import write_json_atomic
    from thor_cli.stages import RunOptions, with_preset

    gcfg = GradeConfig(timeout=grade_timeout, code_timeout=timeout, code_memory_mb=memory)
    run = None
    if not grade_only:
        given = given_on_line(ctx)
        values = with_preset(dict(samples=samples, temperature=temperature, top_p=top_p,
                                  max_tool_calls=max_tool_calls, max_tokens=max_tokens), "eval", preset, given)
        k = values.pop("samples")
        k = DEFAULT_SAMPLES if k is None else k
        if reasoning and "max_tokens" not in given and (preset is not None or max_tokens is None):
            values["max_tokens"] = REASONING_MAX_TOKENS  # the preset's or the default's length, for reasoning
        elif values["max_tokens"] is None:
            values["max_tokens"] = D.max_tokens
        run = RunOptions.from_values(
            model=model or "", backend=backend, backend_options=parse_backend_options(backend_option or []),
            protocol=protocol, top_k=top_k, self_correct=self_correct,
            max_corrections=max_corrections, backoff_tokens=backoff_tokens, max_output_chars=max_output_chars,
            system_prompt=system_prompt, no_tools=no_tools, concurrency=concurrency,
            keep_ids=True,  # the engine's ids give the token counts; dropped after unless --keep-ids
            timeout=timeout, memory=memory, workers=workers, sandbox_url=sandbox_url, base_url=base_url, api_key=api_key,
            search_corpus=search_corpus, search_url=search_url, seed=seed, **values)
    opts = EvalOptions(samples=k if run is not None else 1, concurrency=concurrency, grade=gcfg, model=model or "",
                       keep_ids=keep_ids)
    result = run_file(run, opts, inputs=inputs, benchmarks=list(benchmark or []), output=output, resume=resume,
                      shard=shard, limit=limit)
    from thor_cli.evaluate import print_summary

    print_summary(result)
    if summary:
        write_json_atomic(summary, result)
    failed = sum(int(m.get("errors") or 0) for m in result.get("benchmarks", {}).values())
    if fail_on_error and failed:
        from thor_cli.errors import ThorError

        raise ThorError(f"{failed} samples failed (backend or tool errors)",
                        "see their 'error' field; rerun with --resume to retry them")
    sys.stderr.flush()


main.epilog = examples(  # type: ignore[attr-defined]
    "thor eval --model smollm2-135m --benchmark gsm8k --benchmark math500 --limit 10 --samples 2 "
    "-o runs/eval.jsonl --summary runs/eval.summary.json",
    "thor data get aime24 | thor eval --model Qwen/Qwen2.5-Math-1.5B-Instruct --preset paper | thor show --stats",
    "thor eval --model smollm2-135m -b math500 --no-tools --limit 20 | thor grade | thor show --wrong",
    "cat runs/eval.jsonl | thor eval --grade-only --summary runs/regraded.summary.json > /dev/null",
)
