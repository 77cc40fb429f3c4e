"""``thor gen``: TIR training data. TIRGen (THOR's actor-critic pipeline: ``tirgen.py``, ``stage.py``),
rejection sampling, critics, and the multi-stage filter.

``gen.critics``: the ``Critic`` interface, ``CriticResult``, the rule-based ``ArithmeticCritic``
and ``cells`` (where the pipeline splices each cell's output). ``gen.arith_parse``: explicit
arithmetic in prose and LaTeX, parsed and turned into Python that prints the exact value.
``gen.llm_critic``: a critic model through the rollout engine with THOR's prompt.
"""

from thor_cli.gen.critics import (
    CRITICS,
    ArithmeticCritic,
    Critic,
    CriticResult,
    cell,
    cells,
    rewrite_arithmetic,
)

__all__ = ["CRITICS", "ArithmeticCritic", "Critic", "CriticResult", "cell", "cells", "rewrite_arithmetic"]
