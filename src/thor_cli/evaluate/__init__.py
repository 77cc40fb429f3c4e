"""Evaluation: k samples per problem through the rollout engine, graded, and the metrics.

    from thor_cli.evaluate import summarize, pass_at
    summary = summarize(records)             # per benchmark: avg@k, pass@k, maj@k, best@k_cells, ...

``runner.run_eval`` drives the engine (``thor eval``); ``runner.grade_only`` re-grades records.
"""

from thor_cli.evaluate.metrics import (
           benchmark_metrics,
           best_by_cells,
           cell_score,
           majority,
           pass_at,
           summarize,
)
from thor_cli.evaluate.report import print_summary, summary_table
from thor_cli.evaluate.runner import (
           EvalOptions,
           evaluate,
           grade_only,
           load_problems,
           run_eval,
           run_file,
           summary_of_file,
)

__all__ = ["EvalOptions", "evaluate", "benchmark_metrics", "best_by_cells", "cell_score", "grade_only", "load_problems",
           "majority", "pass_at", "print_summary", "run_eval", "run_file", "summarize", "summary_of_file", "summary_table"]
