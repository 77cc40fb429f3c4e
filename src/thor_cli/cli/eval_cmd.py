"""``thor eval``: evaluate a model with tools on benchmarks (or problems on stdin); ``--grade-only``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from thor_cli.cli.options import Config, FailOnError, Inputs, Limit, Output, Resume, Seed, ShardOpt, examples
from thor_cli.cli.rollout_opts import (
    ApiKey,
    BackendName,
    BackoffTokens,
    BaseUrl,
    CellMemory,
    CellTimeout,
    Concurrency,
    MaxCorrections,
    MaxOutputChars,
    MaxToolCalls,
    NoTools,
    ProtocolName,
    SearchCorpus,
    SearchUrl,
    SelfCorrect,
    SystemPrompt,
    Temperature,
    TopK,
    TopP,
    Workers,
)

# The paper's evaluation settings (section 4): avg@4, T = 0.6, top_p = 1, 4096 tokens (16384 reasoning).
# They are the flags' defaults; --preset paper names them (and --reasoning picks the longer context).
PAPER_SAMPLES, PAPER_MAX_TOKENS, PAPER_REASONING_TOKENS = 4, 4096, 16384


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
    no_tools: NoTools = False,
    backend: BackendName = "hf",
    protocol: ProtocolName = "thor",
    temperature: Temperature = 0.6,
    top_p: TopP = 1.0,
    top_k: TopK = -1,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", show_default=False,
                                                   help="Completion tokens, tool output included (default "
                                                   "4096; 16384 with --reasoning).")] = None,
    max_tool_calls: MaxToolCalls = 10,
    self_correct: SelfCorrect = True,
    max_corrections: MaxCorrections = 4,
    backoff_tokens: BackoffTokens = 500,
    max_output_chars: MaxOutputChars = 2048,
    system_prompt: SystemPrompt = None,
    timeout: CellTimeout = 10.0,
    memory: CellMemory = 1024,
    workers: Workers = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    search_corpus: SearchCorpus = None,
    search_url: SearchUrl = None,
    concurrency: Concurrency = 64,
    keep_ids: Annotated[bool, typer.Option("--keep-ids/--drop-ids", help="Keep token ids, masks and log-probs "
                                           "in the records (off for eval: records stay small).")] = False,
    grade_only: Annotated[bool, typer.Option("--grade-only", help="No model: re-grade existing eval records "
                                             "from the inputs and recompute the summary.")] = False,
    summary: Annotated[str | None, typer.Option("--summary", help="Write the summary (JSON) to this file.",
                                                show_default=False)] = None,
    grade_timeout: Annotated[float, typer.Option("--grade-timeout", help="Seconds per answer check.")] = 5.0,
    output: Output = "-",
    seed: Seed = 0,
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
    import itertools
    import sys

    from thor_cli import aio
    from thor_cli.errors import UsageError
    from thor_cli.evaluate import EvalOptions, print_summary, summary_of_file
    from thor_cli.evaluate import grade_only as regrade
    from thor_cli.evaluate.runner import load_problems, run_eval
    from thor_cli.grading import GradeConfig
    from thor_cli.records.jsonl import OutputSink, iter_records, write_json_atomic
    from thor_cli.records.shard import parse_shard, shard_from_env

    gcfg = GradeConfig(timeout=grade_timeout, code_timeout=timeout, code_memory_mb=memory)
    if grade_only:
        sink = OutputSink(output)
        result = regrade((r.data for r in itertools.islice(iter_records(inputs or ["-"]), limit)),
                         EvalOptions(grade=gcfg), sink.write)
        sink.commit()
    else:
        if not model:
            raise UsageError("--model is needed to run an evaluation", "pass --model NAME, or --grade-only")
        if preset not in (None, "paper"):
            raise UsageError(f"--preset {preset!r} is unknown", "the one preset is 'paper'")
        if preset == "paper":  # the paper's settings over defaults and --config; flags on the line win
            def given(name: str) -> bool:
                src = ctx.get_parameter_source(name)
                return src is not None and src.name == "COMMANDLINE"

            temperature = temperature if given("temperature") else 0.6
            top_p = top_p if given("top_p") else 1.0
            samples = samples if given("samples") else PAPER_SAMPLES
            max_tool_calls = max_tool_calls if given("max_tool_calls") else 10
            if not given("max_tokens"):
                max_tokens = PAPER_REASONING_TOKENS if reasoning else PAPER_MAX_TOKENS
        k = samples if samples is not None else PAPER_SAMPLES
        if k < 1:
            raise UsageError("--samples must be >= 1", "pass e.g. --samples 4")
        from thor_cli.cli.rollout_opts import rollout_config

        values: dict[str, Any] = dict(backend=backend, protocol=protocol, temperature=temperature, top_p=top_p, top_k=top_k,
                      max_tokens=max_tokens or (PAPER_REASONING_TOKENS if reasoning else PAPER_MAX_TOKENS),
                      max_tool_calls=max_tool_calls, self_correct=self_correct, max_corrections=max_corrections,
                      backoff_tokens=backoff_tokens, max_output_chars=max_output_chars,
                      system_prompt=system_prompt, no_tools=no_tools, concurrency=concurrency,
                      keep_ids=True,  # the engine's ids give the token counts; dropped after unless --keep-ids
                      timeout=timeout, memory=memory, workers=workers, base_url=base_url, api_key=api_key,
                      search_corpus=search_corpus, search_url=search_url)
        rcfg = rollout_config(seed=seed, **values)
        key_config = {"model": model, "backend": backend, "rollout": rcfg.to_dict(), "cell_timeout": timeout}
        problems = load_problems(list(benchmark or []), inputs, limit)
        sh = parse_shard(shard) if shard else shard_from_env()
        opts = EvalOptions(samples=k, concurrency=concurrency, grade=gcfg, model=model, key_config=key_config,
                           keep_ids=keep_ids)

        async def go() -> dict:
            from thor_cli.cli.rollout_opts import build_rollout
            from thor_cli.rollout import RolloutEngine

            pool = None
            if "python" in rcfg.tools:  # one sandbox pool for the python tool and the code tests
                from thor_cli.sandbox import SandboxConfig, SandboxPool

                sb: dict[str, Any] = {"timeout": timeout, "memory_mb": memory}
                if workers:
                    sb["workers"] = workers
                pool = await SandboxPool(SandboxConfig(**sb)).start()
            try:
                be, tools, _ = build_rollout(model=model, seed=seed, sandbox_pool=pool, **values)
                try:
                    async with RolloutEngine(be, rcfg, tools=tools) as engine:
                        return await run_eval(problems, engine, sink, opts, shard=sh, emit=write, sandbox=pool)
                finally:
                    await be.close()
            finally:
                if pool is not None:
                    await pool.close()

        def write(rec: dict) -> None:
            sink.write(rec)  # raises PipeClosed when the reader of stdout went away

        from thor_cli.cli.stream import open_sink

        with open_sink("eval", output, resume=resume, shard=sh,
                       config={**key_config, "samples": k, "benchmarks": benchmark or []}) as sink:
            result = aio.run(go())
        if resume and output != "-":
            walls = {n: m.get("wall_s") for n, m in result["benchmarks"].items()}
            result = summary_of_file(output)
            for n, m in result["benchmarks"].items():
                m["wall_s"] = walls.get(n)
        result["config"] = {**key_config, "samples": k}
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
