"""``thor gen`` as a library: problems -> TIR training trajectories, on the stage runner.

Two modes, one record per kept sample (``--all``: the rejected attempts too, each with
``gen.rejected`` saying why):
- ``tirgen`` (default): THOR's actor-critic pipeline (``tirgen.py``): up to ``tries`` tries per
  (problem, sample) until one is kept: not abandoned, at least one executed cell, a final answer,
  and (when the problem has a gold answer and ``check_answer``) a correct one.
- ``sample``: rejection sampling from the policy's own tool use (ToRA style): each of the k
  samples is one trajectory through the engine (the tool prompt), kept when correct with a cell.
Kept records are ready for ``thor sft``: ``prompt_ids`` is the policy's tool prompt (what it sees
at inference: the rollout protocol's prompt), ``completion_ids``/``trajectory`` the
trajectory with authors (policy, critic, tool), ``token_source`` the actor's tokenizer; the
actor's own prompt (the paper's plain CoT prompt) is in ``gen.actor_prompt``. ``grade`` says
whether the answer was right. Content keys: (problem, run config + gen config, sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from thor_cli.gen.tirgen import Critic, TirgenConfig, tirgen_try
from thor_cli.grading import GradeConfig, Grader
from thor_cli.log import log
from thor_cli.records.jsonl import OutputSink
from thor_cli.records.shard import Shard
from thor_cli.stages import RunOptions, RunSession, Sample, load_problems, merge, run_samples

STAGE = "gen"
MODES = ("tirgen", "sample")


@dataclass
class GenOptions:
    mode: str = "tirgen"
    samples: int = 1
    tirgen: TirgenConfig = field(default_factory=TirgenConfig)
    keep_rejected: bool = False  # --all
    check_answer: bool = True  # a kept sample's answer must match the gold one (when there is one)
    actor_prompt: str = "cot"  # cot: the paper's actor prompt (plain step-by-step); tools: the TIR prompt
    grade: GradeConfig = field(default_factory=GradeConfig)
    critic: dict[str, Any] = field(default_factory=dict)  # what determines the critic's output (content keys)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "samples": self.samples, "tirgen": self.tirgen.to_dict(),
                "check_answer": self.check_answer, "actor_prompt": self.actor_prompt, "critic": self.critic}


@dataclass
class GenCounts:
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    tries: int = 0
    cells: int = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def _n_cells(fields: dict[str, Any]) -> int:
    return sum(1 for t in (fields.get("trajectory") or {}).get("turns", []) if t.get("kind") == "output")


def _reason(fields: dict[str, Any], grade: dict[str, Any] | None, has_gold: bool, check: bool) -> str | None:
    traj = fields.get("trajectory") or {}
    if fields.get("error"):
        return "error"
    if traj.get("stop_reason") == "abandoned":
        return "abandoned"
    if traj.get("stop_reason") in ("max_tokens", "context_overflow"):
        return "too_long"
    if _n_cells(fields) == 0:
        return "no_cells"
    if not traj.get("final_answer"):
        return "no_answer"
    if check and has_gold and grade is not None and not grade.get("correct"):
        return "wrong_answer"
    return None


async def generate(problems: Any, run: RunOptions, opts: GenOptions, sink: OutputSink, *, critic: Critic | None,
                   shard: Shard | None = None, key_config: dict[str, Any], backend: Any = None) -> GenCounts:
    """Run ``opts.mode`` over ``problems`` into ``sink`` (module doc); returns the counts.
    ``backend``: the actor's backend when the caller owns it (else loaded from ``run``)."""
    counts = GenCounts()
    async with RunSession(run, backend=backend) as session:
        engine = session.engine
        with Grader(opts.grade, sandbox=session.pool) as grader:
            async def grade(rec: dict[str, Any]) -> dict[str, Any] | None:
                return (await grader.agrade([rec]))[0].to_dict() if rec.get("answer") is not None else None

            async def unit(problem: dict[str, Any], key: str, sample: int) -> dict[str, Any]:
                policy_prompt = engine.prompt_ids(problem)
                attempts: list[dict[str, Any]] = []
                if opts.mode == "sample":
                    fields = await engine.rollout(problem, key, sample)
                    attempts.append({"fields": fields, "gen": {"mode": "sample"}})
                else:
                    assert critic is not None
                    actor_prompt = policy_prompt if opts.actor_prompt == "tools" else engine.prompt_ids(
                        problem, with_tools=False)
                    for t in range(opts.tirgen.tries):
                        res = await tirgen_try(engine, critic, problem, f"{key}/try{t}", sample, opts.tirgen,
                                               actor_prompt_ids=actor_prompt)
                        res.fields["prompt_ids"] = list(policy_prompt)  # trained as the policy will infer
                        attempts.append({"fields": res.fields, "gen": {
                            "mode": "tirgen", "try": t, "critic": getattr(critic, "name", "critic"),
                            "actor_prompt": opts.actor_prompt, "steps": res.steps}})
                        rec = merge(problem, res.fields)
                        g = await grade(rec)
                        attempts[-1]["grade"] = g
                        if _reason(res.fields, g, problem.get("answer") is not None, opts.check_answer) is None:
                            break
                return {"attempts": attempts}

            async def finish(u: Sample, out: dict[str, Any]) -> list[dict[str, Any]]:
                recs: list[dict[str, Any]] = []
                for a in out["attempts"]:
                    rec = merge(u.problem, a["fields"])
                    rec["sample"] = u.index
                    g = a["grade"] if "grade" in a else await grade(rec)
                    if g is not None:
                        rec["grade"] = g
                    why = _reason(a["fields"], g, u.problem.get("answer") is not None, opts.check_answer)
                    counts.tries += 1
                    rec[STAGE] = {**a["gen"], "tries": len(out["attempts"])}
                    if why is None:
                        counts.kept += 1
                        counts.cells += _n_cells(a["fields"])
                        recs.append(rec)
                    else:
                        counts.reject(why)
                        if opts.keep_rejected:
                            rec[STAGE]["rejected"] = why
                            recs.append(rec)
                return recs

            try:
                await run_samples(problems, engine, stage=STAGE, samples=opts.samples, key_config=key_config,
                                  emit=sink.write, finish=finish, done=sink.done, shard=shard,
                                  concurrency=run.concurrency, rollout=unit)
            finally:
                await grader.aclose()
    log.info("gen: %d kept of %d tries (%s)", counts.kept, counts.tries,
             ", ".join(f"{k} {v}" for k, v in sorted(counts.rejected.items())) or "none rejected")
    return counts


@dataclass
class CriticSpec:
    """Which critic: ``arithmetic`` (rule-based, offline) or a model on any backend."""

    name: str = "arithmetic"
    backend: str = "hf"
    temperature: float = 0.0
    max_tokens: int = 1024
    base_url: str | None = None
    api_key: str | None = None
    prompt: str | None = None  # template; None: THOR's (llm_critic.CRITIC_PROMPT)
    feedback: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)  # --critic-option: the critic engine's options

    def key(self) -> dict[str, Any]:
        key = {"name": self.name, "backend": self.backend, "temperature": self.temperature,
               "max_tokens": self.max_tokens, "prompt": self.prompt, "feedback": self.feedback}
        if self.backend_options:  # engine options can change what is sampled (dtype), as for the actor
            key["backend_options"] = dict(self.backend_options)
        return key


def run_file(run: RunOptions, opts: GenOptions, critic: CriticSpec, *, inputs: list[str] | None,
             benchmarks: list[str], output: str = "-", resume: bool = False, shard: str | None = None,
             limit: int | None = None) -> GenCounts:
    """``thor gen`` end to end: problems through ``generate`` into ``output`` (NAME.part, manifest,
    --resume and --shard as every stage: ``records.stream``)."""
    from thor_cli import aio
    from thor_cli.errors import UsageError
    from thor_cli.records.shard import parse_shard, shard_from_env
    from thor_cli.records.stream import open_sink

    if not run.model:
        raise UsageError("--model is needed (the actor: the policy to make data for)", "pass --model NAME")
    if opts.mode not in MODES:
        raise UsageError(f"--mode {opts.mode!r} is unknown", f"choose one of: {', '.join(MODES)}")
    if opts.samples < 1 or opts.tirgen.tries < 1 or opts.tirgen.step_tokens < 1 or opts.tirgen.critic_retries < 0:
        raise UsageError("--samples, --tries and --step-tokens must be >= 1, --critic-retries >= 0",
                         "fix the flag's value")
    if run.no_tools or "python" not in run.tools:
        raise UsageError("thor gen makes tool-integrated data: it needs the python tool", "drop --no-tools")
    if not run.keep_ids:
        run = run.replace(keep_ids=True)
    opts = replace(opts, critic=critic.key() if opts.mode == "tirgen" else {})  # the caller's options stay as given
    key_config = {**run.key_config(), "gen": opts.to_dict()}
    problems = load_problems(benchmarks, inputs, limit)
    sh = parse_shard(shard) if shard else shard_from_env()

    async def go(sink: OutputSink) -> GenCounts:
        if opts.mode == "sample":
            return await generate(problems, run, opts, sink, critic=None, shard=sh, key_config=key_config)
        if critic.name == "arithmetic":
            from thor_cli.gen.critics import ArithmeticCritic

            return await generate(problems, run, opts, sink, critic=ArithmeticCritic(), shard=sh,
                                  key_config=key_config)
        from thor_cli.gen.llm_critic import CRITIC_PROMPT, FEEDBACK_NOTE, LLMCritic

        copts = RunOptions(model=critic.name, backend=critic.backend, backend_options=dict(critic.backend_options),
                           no_tools=True, temperature=critic.temperature,
                           max_tokens=critic.max_tokens, base_url=critic.base_url, api_key=critic.api_key,
                           self_correct=False, keep_ids=False, seed=run.seed, concurrency=run.concurrency)
        async with RunSession(copts) as cs:
            llm = LLMCritic(cs.engine, name=critic.name, prompt=critic.prompt or CRITIC_PROMPT,
                            feedback=critic.feedback or FEEDBACK_NOTE)
            return await generate(problems, run, opts, sink, critic=llm, shard=sh, key_config=key_config)

    with open_sink(STAGE, output, resume=resume, shard=sh, config=key_config) as sink:
        return aio.run(go(sink))
