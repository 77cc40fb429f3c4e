"""The text and code checks behind ``thor gen filter``: pure functions on strings, no records.

- code quality: :func:`read_cell` (non-comment lines, parsed with :mod:`ast`), :func:`max_short_cells`
  (THOR's ceil(0.4 n) rule), :func:`library_or_flow` (a library call, a loop or a branch);
- repetition: :func:`repeated_ngram` (a character n-gram seen more than k times; hashed with numpy,
  every candidate confirmed on the text itself, so the answer is exact);
- LaTeX: :func:`dollar_delimiters` (unescaped ``$`` and ``$$`` counts);
- script: :func:`foreign_letters` (letters outside the configured scripts, by Unicode name).

``filters.py`` applies them to records in THOR's order.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

# ---- code quality --------------------------------------------------------------------------------

# Control flow in the paper's sense (a loop or a branch); a comprehension is a loop.
_FLOW = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.IfExp, ast.Match, ast.ListComp, ast.SetComp,
         ast.DictComp, ast.GeneratorExp)


# Statements that settle the question at a cell's top level: most cells that qualify import or
# loop there, so the full walk of every node (10x the cost of parsing) is rarely needed.
_TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.For, ast.AsyncFor, ast.While, ast.If, ast.Match)


@dataclass(frozen=True)
class Cell:
    """One python cell as the code-quality filter reads it."""

    lines: int  # non-blank lines that are not only a comment
    tree: ast.Module | None  # None: ast.parse refused it (the filter counts it as low quality)


@dataclass(frozen=True)
class Uses:
    """What a parsed cell uses."""

    imports: frozenset[str]  # names its import statements bind ("np" for import numpy as np)
    calls: frozenset[str]  # root names of the calls it makes ("sp" for sp.solve(...), "solve" for solve(...))
    flow: bool  # a loop, a branch or a comprehension


def code_lines(code: str) -> int:
    """Lines that are neither blank nor only a comment.

    >>> code_lines("# setup\\nimport math\\n\\nx = 1  # one\\nprint(x)\\n")
    3
    """
    n = 0
    for line in code.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            n += 1
    return n


def read_cell(code: str) -> Cell:
    """Count a cell's code lines and parse it.

    >>> read_cell("x = 1\\nprint(x)").lines, read_cell("print(2 +").tree is None
    (2, True)
    """
    try:
        tree: ast.Module | None = ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        tree = None
    return Cell(code_lines(code), tree)


def _root_name(node: ast.expr) -> str | None:
    """``sympy`` for ``sympy.solve``, ``np`` for ``np.linalg.norm``, ``f`` for ``f``; else None."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def cell_uses(tree: ast.Module) -> Uses:
    """Imports, call roots and control flow anywhere in a parsed cell.

    >>> u = cell_uses(ast.parse("import sympy as sp\\nx = sp.symbols('x')\\nprint(sp.solve(x**2 - 4, x))"))
    >>> sorted(u.imports), sorted(u.calls), u.flow
    (['sp'], ['print', 'sp'], False)
    >>> cell_uses(ast.parse("y = [i * i for i in range(3)]")).flow
    True
    """
    imports: set[str] = set()
    calls: set[str] = set()
    flow = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update((a.asname or a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.update((a.asname or a.name) for a in node.names if a.name != "*")
            if node.module:  # from m import *: the module's own name stands in for what it binds
                imports.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            root = _root_name(node.func)
            if root is not None:
                calls.add(root)
        elif isinstance(node, _FLOW):
            flow = True
    return Uses(frozenset(imports), frozenset(calls), flow)


@lru_cache(maxsize=1024)
def max_short_cells(n: int, fraction: float) -> int:
    """How many of ``n`` cells may be short: ``ceil(fraction * n)``, computed exactly (a float
    product such as 0.7 * 10 = 7.000000000000001 would round up one too many).

    >>> [max_short_cells(n, 0.4) for n in range(1, 6)]
    [1, 1, 2, 2, 2]
    """
    return math.ceil(Fraction(str(fraction)) * n)


def library_or_flow(cells: list[Cell]) -> bool:
    """Does some cell import a module, call something an import bound (``np.sqrt(2)``, or
    ``solve(eq)`` after ``from sympy import solve``), loop or branch? Imports in any cell count for
    every cell, because a session's cells share one interpreter. Cells that do not parse count for
    nothing.

    >>> library_or_flow([read_cell("import numpy as np"), read_cell("print(1)")])
    True
    >>> library_or_flow([read_cell("xs = [1]\\nxs.append(2)\\nprint(math.sqrt(2))")])
    False
    """
    trees = [c.tree for c in cells if c.tree is not None]
    if any(isinstance(stmt, _TOP_LEVEL) for t in trees for stmt in t.body):
        return True
    uses = [cell_uses(t) for t in trees]
    bound = frozenset().union(*(u.imports for u in uses))
    return any(u.imports or u.flow or (u.calls & bound) for u in uses)


# ---- repetition ----------------------------------------------------------------------------------

_BASE = 1099511628211  # odd, so it has an inverse modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)


@lru_cache(maxsize=8)
def _powers(base: int, size: int) -> np.ndarray:
    p = np.full(size, base, dtype=np.uint64)
    p[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(p, dtype=np.uint64)


def _pow_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    size = 1 << max(12, (size - 1).bit_length())  # a few sizes, each cached once
    return _powers(_BASE, size), _powers(_BASE_INV, size)


def repeated_ngram(text: str, n: int = 20, max_count: int = 20) -> tuple[str, int] | None:
    """A character ``n``-gram that occurs more than ``max_count`` times in ``text`` (overlaps
    count), with its count; None when there is none.

    Each n-gram's polynomial hash modulo 2**64 comes from prefix sums (a few vector operations
    whatever n is); the hashes seen more than ``max_count`` times are then checked against the text
    itself, so a hash collision can never reject a record. About 20x faster than a Counter of
    slices on a 5,000-character text.

    >>> repeated_ngram("ab" * 20, n=4, max_count=18)
    ('abab', 19)
    >>> repeated_ngram("ab" * 20, n=4, max_count=19) is None
    True
    """
    total = len(text) - n + 1
    if n <= 0 or total <= max_count:
        return None
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    pw, ipw = _pow_tables(len(codes) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
        np.cumsum(codes * pw[:len(codes)], out=prefix[1:])
        hashes = (prefix[n:] - prefix[:total]) * ipw[:total]
    ranked = np.sort(hashes)  # a plain sort: 10x faster than a stable argsort, and hits are rare
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    counts = np.diff(np.append(starts, total))
    best: tuple[str, int] | None = None
    for s in np.flatnonzero(counts > max_count):
        exact: dict[str, int] = {}
        for i in np.flatnonzero(hashes == ranked[starts[s]]).tolist():
            # the same hash: count the actual n-grams (a collision falls apart here)
            gram = text[i:i + n]
            exact[gram] = exact.get(gram, 0) + 1
        gram, count = max(exact.items(), key=lambda kv: (kv[1], kv[0]))
        if count > max_count and (best is None or count > best[1]):
            best = (gram, count)
    return best


# ---- LaTeX dollars -------------------------------------------------------------------------------

_DOLLARS = re.compile(r"\\.|\$\$|\$", re.S)


def dollar_delimiters(text: str) -> tuple[int, int]:
    """(inline ``$``, display ``$$``) delimiters in ``text``, not counting escaped ``\\$``. A
    ``$$`` is one display delimiter (a pair of dollar signs), so balanced text has an even number
    of each.

    >>> dollar_delimiters(r"$x$ and $$y$$ cost \\$5")
    (2, 2)
    >>> dollar_delimiters("$$x$")
    (1, 1)
    """
    inline = display = 0
    if "$" not in text:
        return 0, 0
    for m in _DOLLARS.finditer(text):
        tok = m.group(0)
        if tok == "$":
            inline += 1
        elif tok == "$$":
            display += 1
    return inline, display


# ---- scripts -------------------------------------------------------------------------------------

# Unicode names of letters begin with their script ("CYRILLIC SMALL LETTER A", "CJK UNIFIED
# IDEOGRAPH-4E00"). Letters named otherwise ("MATHEMATICAL ITALIC SMALL X", "DOUBLE-STRUCK CAPITAL
# R", "PLANCK CONSTANT", "ALEF SYMBOL") are notation, in no script.
SCRIPTS = frozenset({
    "LATIN", "GREEK", "COPTIC", "CYRILLIC", "ARMENIAN", "HEBREW", "ARABIC", "SYRIAC", "THAANA",
    "DEVANAGARI", "BENGALI", "GURMUKHI", "GUJARATI", "ORIYA", "TAMIL", "TELUGU", "KANNADA",
    "MALAYALAM", "SINHALA", "THAI", "LAO", "TIBETAN", "MYANMAR", "GEORGIAN", "HANGUL", "ETHIOPIC",
    "CHEROKEE", "KHMER", "MONGOLIAN", "HIRAGANA", "KATAKANA", "BOPOMOFO", "CJK", "YI",
})
_ASCII_LETTERS = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1))
_ASCII_NON_LETTERS = bytes(b for b in range(128) if b not in _ASCII_LETTERS)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@lru_cache(maxsize=65536)
def script_of(ch: str) -> str | None:
    """The script of a letter ("LATIN", "CJK", "CYRILLIC" ...); None for a non-letter or a letter
    of no script (mathematical notation).

    >>> script_of("é"), script_of("Ж"), script_of("中"), script_of("π"), script_of("ℝ"), script_of("1")
    ('LATIN', 'CYRILLIC', 'CJK', 'GREEK', None, None)
    """
    if not ch.isalpha():
        return None
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    return first if first in SCRIPTS else None


def foreign_letters(text: str, allowed: frozenset[str]) -> tuple[int, int, str | None]:
    """(letters in a script outside ``allowed``, all letters, the most common such script).

    ASCII letters are counted in C (most text is mostly ASCII); only the other characters are
    looked up, each distinct one once per process.

    >>> foreign_letters("x = 1, это ответ", frozenset({"LATIN"}))
    (8, 9, 'CYRILLIC')
    """
    raw = text.encode("ascii", "ignore")
    letters = len(raw.translate(None, _ASCII_NON_LETTERS))
    foreign: dict[str, int] = {}
    if letters and "LATIN" not in allowed:
        foreign["LATIN"] = letters
    if text.isascii():
        return letters if foreign else 0, letters, "LATIN" if foreign else None
    for ch in _NON_ASCII.findall(text):
        script = script_of(ch)
        if ch.isalpha():
            letters += 1
        if script is not None and script not in allowed:
            foreign[script] = foreign.get(script, 0) + 1
    if not foreign:
        return 0, letters, None
    top = max(foreign.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return sum(foreign.values()), letters, top
