"""thor: a toolkit for tool-integrated reasoning (TIR).

Library layout (arrows point down; see docs/ARCHITECTURE.md):
cli -> stages (eval, show, grade, data) -> rollout -> backends | tools | grading -> sandbox -> records
"""

__version__ = "0.1.0"
