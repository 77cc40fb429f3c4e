"""Code-problem grading (HumanEval, MBPP): run the candidate against the problem's tests.

The candidate is the last fenced Python block in the model's text (or the whole ``pred``). If it
does not define the problem's ``entry_point``, it is taken as a completion of the problem's
``prompt`` (HumanEval style). The program candidate + tests (+ ``check(entry_point)`` when the
tests define ``check``) runs in a fresh sandbox session; it passes when it exits cleanly.
The failing assertion (or error) goes into the grade's ``detail``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from thor_cli.grading.extract import trajectory_text
from thor_cli.records.schema import Grade

if TYPE_CHECKING:
    from thor_cli.sandbox import Sandbox

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.S)
_CODE_TAG = re.compile(r"<code>(.*?)(?:</code>|$)", re.S)


def candidate_code(record: dict[str, Any]) -> str | None:
    """The code a model submitted for a code problem."""
    if record.get("pred") is not None:
        text = str(record["pred"])
    elif isinstance(record.get("trajectory"), dict):
        text = trajectory_text(record["trajectory"])
    elif isinstance(record.get("response"), str):
        text = record["response"]
    else:
        return None
    blocks = _FENCE.findall(text) or _CODE_TAG.findall(text)
    code = blocks[-1] if blocks else text
    return code.strip("\n") or None


def program_for(record: dict[str, Any], code: str) -> str:
    """The program to run: the candidate, the tests, and the call of HumanEval's ``check``."""
    entry = record.get("entry_point")
    prompt = record.get("prompt") or ""
    defines = re.compile(rf"^\s*def\s+{re.escape(entry)}\s*\(", re.M) if entry else None
    if defines is not None and defines.search(prompt) and not defines.search(code):
        code = prompt + code  # a bare function body completing a HumanEval prompt
    tests = record.get("tests") or ""
    if isinstance(tests, list):
        tests = "\n".join(tests)
    program = f"{code}\n\n{tests}\n"
    if entry and re.search(r"^def\s+check\s*\(", tests, re.M):
        program += f"\ncheck({entry})\n"
    return program


def _failure_detail(res: Any, program: str) -> str:
    """The error, with the source line that raised it (the innermost ``<cell>`` frame)."""
    stderr = (getattr(res, "stderr", "") or "").strip()
    err = getattr(res, "error", None) or (stderr.splitlines()[-1] if stderr else getattr(res, "status", "failed"))
    lines = re.findall(r'File "<cell>", line (\d+)', stderr)
    src = program.splitlines()
    if lines and 0 < int(lines[-1]) <= len(src):
        return f"{src[int(lines[-1]) - 1].strip()} -> {err}"
    return str(err)


async def grade_code(records: list[dict[str, Any]], *, timeout: float = 10.0, pool: Sandbox | None = None,
                     memory_mb: int = 1024) -> list[Grade]:
    """Run each record's candidate against its tests in the sandbox; one Grade per record.

    ``pool``: a started SandboxPool (or anything with its ``session()``) to run in; without one, a
    pool (``memory_mb`` per session) is started and closed for this call alone: pass one, or use
    ``Grader``, when grading batch after batch."""
    import asyncio

    from thor_cli.sandbox import SandboxConfig, SandboxRef

    async def one(p: Sandbox, rec: dict[str, Any]) -> Grade:
        code = candidate_code(rec)
        if code is None:
            return Grade(False, None, None, "no_answer", "no code found in the response")
        if not rec.get("tests"):
            return Grade(False, code, None, "no_gold", "the problem has no 'tests'")
        sess = await p.session()
        program = program_for(rec, code)
        try:
            res = await sess.run(program, timeout=timeout)
        finally:
            close = getattr(sess, "close", None)
            if close is not None:
                await close()
        if res.status == "ok":
            return Grade(True, code, None, "code_tests")
        return Grade(False, code, None, "code_tests", _failure_detail(res, program))

    ref = SandboxRef(pool, SandboxConfig(timeout=timeout, memory_mb=memory_mb))
    try:
        return list(await asyncio.gather(*(one(ref, r) for r in records)))
    finally:
        await ref.close()  # only a pool it started itself
