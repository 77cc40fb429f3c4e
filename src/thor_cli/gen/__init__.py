"""TIR data generation (``thor gen``, TIRGen): critics that turn an actor's computations into cells.

``gen.critics``: the ``Critic`` interface, ``CriticResult``, the rule-based ``ArithmeticCritic``
and ``cells`` (where the pipeline splices each cell's output). ``gen.arith_parse``: explicit
arithmetic in prose and LaTeX, parsed and turned into Python that prints the exact value.
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
