"""``thor gen``: TIRGen and rejection sampling -> TIR training data; ``thor gen filter`` cleans it.

``thor gen [INPUTS]`` is ``thor gen run [INPUTS]`` (the default subcommand).
"""

from __future__ import annotations

from typing import Annotated

import typer

from thor_cli.cli.gen_filter import main as filter_main
from thor_cli.cli.options import (
    Config,
    DefaultRun,
    Inputs,
    Limit,
    Output,
    Resume,
    Seed,
    ShardOpt,
    examples,
)
from thor_cli.cli.rollout_opts import (
    ApiKey,
    BackendName,
    BackendOption,
    BaseUrl,
    CellMemory,
    CellTimeout,
    Concurrency,
    D,
    MaxOutputChars,
    ProtocolName,
    SandboxUrl,
    SystemPrompt,
    Temperature,
    TopK,
    TopP,
    Workers,
)

app = typer.Typer(
    cls=DefaultRun, no_args_is_help=False, add_completion=False, rich_markup_mode="rich",
    help="Make tool-integrated (TIR) training data. [bold]thor gen[/bold] with no subcommand is "
    "[bold]thor gen run[/bold]: problems in, one trajectory per kept sample out (TIRGen's actor-critic "
    "loop, or rejection sampling); [bold]thor gen filter[/bold] applies THOR's multi-stage filter.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

RUN_EPILOG = examples(
    "thor data get gsm8k --limit 50 | thor gen --model smollm2-135m --critic arithmetic -o runs/gen.jsonl",
    "thor gen train.jsonl --model Qwen/Qwen2.5-Math-7B --backend vllm --critic Qwen/Qwen3-32B "
    "--critic-backend openai --critic-base-url http://critic:8000/v1 -o gen.jsonl --shard 0/8",
    "thor gen problems.jsonl --model ./sft-ckpt --mode sample --samples 8 --temperature 1.0 -o sampled.jsonl",
    "thor gen runs/gen.jsonl --resume -o runs/gen.jsonl   # continue a killed run",
)


@app.command("run", epilog=RUN_EPILOG)
def run(
    inputs: Inputs = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The actor: the policy to make data for "
                                              "(a cached name, a folder or an HF id).", show_default=False)] = None,
    benchmark: Annotated[list[str] | None, typer.Option("--benchmark", "-b", help="A shipped benchmark as the "
                                                        "problems; repeatable. Without it, problems are read "
                                                        "from the inputs.", show_default=False)] = None,
    mode: Annotated[str, typer.Option("--mode", help="tirgen: THOR's actor-critic pipeline | sample: rejection "
                                      "sampling from the policy's own tool use (ToRA style).")] = "tirgen",
    critic: Annotated[str, typer.Option("--critic", help="'arithmetic' (rule-based: turns explicit arithmetic "
                                        "into cells; offline) or a critic model (any backend).")] = "arithmetic",
    critic_backend: Annotated[str, typer.Option("--critic-backend", help="The critic model's backend.")] = "hf",
    critic_base_url: Annotated[str | None, typer.Option("--critic-base-url", help="openai critic backend: the "
                                                        "server's URL.", show_default=False)] = None,
    critic_api_key: Annotated[str | None, typer.Option("--critic-api-key", envvar="THOR_CRITIC_API_KEY",
                                                       help="openai critic backend: API key.",
                                                       show_default=False)] = None,
    critic_temperature: Annotated[float, typer.Option("--critic-temperature", help="The critic's sampling "
                                                      "temperature.")] = 0.0,
    critic_max_tokens: Annotated[int, typer.Option("--critic-max-tokens", help="Tokens per rewrite.")] = 1024,
    critic_option: Annotated[list[str] | None, typer.Option("--critic-option", help="An engine option of the "
                                                            "critic's backend, KEY=VALUE (repeatable; JSON "
                                                            "values): e.g. dtype=bfloat16, max_batch=16 (hf).",
                                                            show_default=False)] = None,
    critic_prompt: Annotated[str | None, typer.Option("--critic-prompt", help="The critic's prompt template "
                                                      "({question}, {step}, {feedback}); default THOR's. Long "
                                                      "templates go in --config.", show_default=False)] = None,
    critic_feedback: Annotated[str | None, typer.Option("--critic-feedback", help="What a retry adds to the "
                                                        "prompt as {feedback} ({error}).", show_default=False)] = None,
    step_tokens: Annotated[int | None, typer.Option("--step-tokens", help="L_step: tokens per actor step, cut at "
                                                    "a line break (512; 4096 with --reasoning).",
                                                    show_default=False)] = None,
    reasoning: Annotated[bool, typer.Option("--reasoning", help="A reasoning model: L_step 4096 and 16384 "
                                            "tokens.")] = False,
    min_step_tokens: Annotated[int, typer.Option("--min-step-tokens", help="Shorter steps pass through "
                                                 "unchanged.")] = 16,
    tries: Annotated[int, typer.Option("--tries", help="N: tries per problem and sample until one is kept.")] = 8,
    critic_retries: Annotated[int, typer.Option("--critic-retries", help="K: rewrites asked again after a "
                                                "failed cell before the try is abandoned.")] = 2,
    samples: Annotated[int, typer.Option("--samples", "-k", help="Kept samples wanted per problem (each its "
                                         "own tries; in sample mode: samples drawn).")] = 1,
    actor_prompt: Annotated[str, typer.Option("--actor-prompt", help="cot: the paper's actor prompt (plain "
                                              "step-by-step) | tools: the TIR prompt.")] = "cot",
    check_answer: Annotated[bool, typer.Option("--check-answer/--no-check-answer", help="Keep only samples "
                                               "whose final answer matches the gold answer.")] = True,
    keep_all: Annotated[bool, typer.Option("--all", help="Also write rejected attempts, with gen.rejected "
                                           "saying why.")] = False,
    backend: BackendName = D.backend,
    backend_option: BackendOption = None,
    protocol: ProtocolName = D.protocol,
    temperature: Temperature = 0.7,
    top_p: TopP = D.top_p,
    top_k: TopK = D.top_k,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Completion tokens per trajectory, tool "
                                                   "output included (4096; 16384 with --reasoning).",
                                                   show_default=False)] = None,
    max_output_chars: MaxOutputChars = D.max_output_chars,
    system_prompt: SystemPrompt = D.system_prompt,
    timeout: CellTimeout = D.timeout,
    memory: CellMemory = D.memory,
    workers: Workers = D.workers,
    sandbox_url: SandboxUrl = D.sandbox_url,
    base_url: BaseUrl = D.base_url,
    api_key: ApiKey = D.api_key,
    concurrency: Concurrency = D.concurrency,
    output: Output = "-",
    seed: Seed = D.seed,
    resume: Resume = False,
    shard: ShardOpt = None,
    limit: Limit = None,
    config: Config = None,
) -> None:
    """Generate TIR training data (the default subcommand of thor gen).

    Input: problem records (question, gold answer). Output: one record per kept sample, ready for
    thor sft: the trajectory with who wrote each turn (policy, critic, tool), token ids of the
    actor's tokenizer with its fingerprint, prompt_ids of the policy's tool prompt, grade, and
    gen (the try, each step's actor text, the critic's rewrite and each cell's result). A summary
    of kept and rejected tries by reason goes to stderr.
    """
    from thor_cli.backends import parse_backend_options
    from thor_cli.gen.stage import CriticSpec, GenOptions, run_file
    from thor_cli.gen.tirgen import TirgenConfig
    from thor_cli.grading import GradeConfig
    from thor_cli.stages import RunOptions

    tokens = max_tokens or (16384 if reasoning else 4096)
    run_opts = RunOptions.from_values(
        model=model or "", backend=backend, backend_options=parse_backend_options(backend_option or []),
        protocol=protocol, temperature=temperature, top_p=top_p, top_k=top_k,
        max_tokens=tokens, max_output_chars=max_output_chars, system_prompt=system_prompt, timeout=timeout,
        memory=memory, workers=workers, sandbox_url=sandbox_url, base_url=base_url, api_key=api_key, concurrency=concurrency, seed=seed,
        self_correct=mode == "sample", keep_ids=True)
    opts = GenOptions(mode=mode, samples=samples, keep_rejected=keep_all, check_answer=check_answer,
                      actor_prompt=actor_prompt,
                      tirgen=TirgenConfig(step_tokens=step_tokens or (4096 if reasoning else 512),
                                          min_step_tokens=min_step_tokens, critic_retries=critic_retries,
                                          tries=tries),
                      grade=GradeConfig(code_timeout=timeout, code_memory_mb=memory))
    spec = CriticSpec(name=critic, backend=critic_backend, temperature=critic_temperature,
                      max_tokens=critic_max_tokens, base_url=critic_base_url, api_key=critic_api_key,
                      prompt=critic_prompt, feedback=critic_feedback,
                      backend_options=parse_backend_options(critic_option or [], flag="--critic-option"))
    if actor_prompt not in ("cot", "tools"):
        from thor_cli.errors import UsageError

        raise UsageError(f"--actor-prompt {actor_prompt!r} is unknown", "use cot or tools")
    run_file(run_opts, opts, spec, inputs=inputs, benchmarks=list(benchmark or []), output=output, resume=resume,
             shard=shard, limit=limit)


# thor gen filter: THOR's multi-stage filter (cli/gen_filter.py)
app.command("filter", epilog=getattr(filter_main, "epilog", None))(filter_main)
