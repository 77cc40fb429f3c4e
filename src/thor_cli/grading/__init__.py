"""Answer grading: extraction, equivalence, time-bounded checking, code tests.

    from thor_cli.grading import Grader, GradeConfig
    with Grader(GradeConfig(timeout=5)) as g:
        grades = g.grade(records)          # records with "answer" and trajectory/response/pred
        rec["grade"] = grades[0].to_dict()

Imports stay light (no sympy): math-verify is only imported in the worker processes.
"""

from thor_cli.grading.extract import extract_answer, extract_boxed, prediction
from thor_cli.grading.grader import GradeConfig, Grader, gold_of, grade_answer, graded_in_batches, is_code
from thor_cli.grading.normalize import fast_equal
from thor_cli.grading.pool import GradePool

__all__ = ["GradeConfig", "GradePool", "Grader", "graded_in_batches", "extract_answer", "extract_boxed", "fast_equal",
           "gold_of", "grade_answer", "is_code", "prediction"]
