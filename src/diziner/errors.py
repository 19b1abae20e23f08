"""Errors the user can act on.

Every error that reaches the command line is one line: the file, the line (when there
is one) and the problem, and the process exits with code 2. Nothing else in the code
base prints tracebacks for bad input.
"""
from __future__ import annotations

from pathlib import Path


class DizinerError(Exception):
    """An error caused by the user's input or configuration (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(str(self.message).split())
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return text


class InputError(DizinerError):
    """Bad content in a file the user gave: names the file, the line and the problem."""

    def __init__(self, path: str | Path | None, line: int | None, problem: str, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.problem = problem
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {problem}", hint)


class ConfigError(DizinerError):
    """A pool, schema or guideline file that is invalid, or a missing environment variable."""


class BudgetExceeded(DizinerError):
    """The usage budget was reached: no new calls are made."""


class LLMCallError(Exception):
    """A call that still failed after retries. Recorded with its reason, never turned into 'no entities'."""

    def __init__(self, reason: str, kind: str = "error"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # e.g. http_5xx, http_429, timeout, connection, parse, budget
