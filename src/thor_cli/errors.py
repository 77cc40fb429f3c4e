"""Project errors. Library code raises these; only the CLI boundary prints them.

Every error says what failed and what to do about it. Errors about input also name the file,
the line and the field (``math.jsonl:1742: field "answer": missing; ...``).
"""

from __future__ import annotations


class ThorError(Exception):
    """An expected failure with a message for people. Exit code 1 at the CLI."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(ThorError):
    """A record or input file that does not fit. Names file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        what = f'field "{field}": ' if field else ""
        super().__init__(f"{where}{what}{message}", hint)


class UsageError(ThorError):
    """Wrong flags or arguments. Exit code 2 at the CLI."""

    exit_code = 2


class SandboxError(ThorError):
    """thor's own sandbox failed (never the fault of the code it ran)."""


class BackendError(ThorError):
    """A generation backend failed (server down, model missing, bad response)."""


class PipeClosed(Exception):
    """The reader of stdout went away (``thor show | head``): stop quietly.

    Deliberately not an OSError, so click does not turn it into exit code 1.
    """
