"""An LLM judge for answers the rule-based grader cannot decide (the paper's grading).

A stage above ``grading/`` and ``rollout/``: grading sits below the rollout engine (the engine
imports ``grading.extract``), and only the rollout engine talks to a model, so the judge lives
here and runs its prompt as a tool-free trajectory through ``RolloutEngine``.

    from thor_cli.grading import Grader
    from thor_cli.judge import CascadeGrader, Judge, JudgeCache

    judge = Judge.load("openai", "Qwen/Qwen2.5-7B-Instruct", backend_options={"base_url": URL},
                       cache=JudgeCache())                          # $THOR_HOME/judge_cache.jsonl
    with Grader() as grader, judge:
        cascade = CascadeGrader(grader, judge)
        grades = cascade.grade(records)      # grade.method == "judge" where the rules could not decide
        rewards = cascade.reward(records)    # 1.0 / 0.0, usable as an RL reward

Modules: ``prompt`` (template, verdict parser, cache key), ``cache`` (JSONL cache), ``judge``
(the engine-driven judge), ``cascade`` (what the rules cannot decide; ``JudgedGrade``).
"""

from thor_cli.judge.cache import JudgeCache, default_cache_path
from thor_cli.judge.cascade import JUDGE_METHODS, CascadeGrader, JudgedGrade, needs_judge
from thor_cli.judge.judge import Judge, JudgeItem, JudgeVerdict
from thor_cli.judge.prompt import PROMPT_VERSION, content_key, parse_verdict, render

__all__ = ["JUDGE_METHODS", "PROMPT_VERSION", "CascadeGrader", "Judge", "JudgeCache", "JudgeItem", "JudgeVerdict",
           "JudgedGrade", "content_key", "default_cache_path", "needs_judge", "parse_verdict", "render"]
