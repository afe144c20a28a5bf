"""Typed errors. Every user-facing error says what was wrong and where (file, line, field).

The CLI maps ``DreamsError`` subclasses to exit code 2 (bad usage or input) and prints the message.
``DreamFailure`` carries an Anthropic-style ``error.type`` for the dream record.
"""

from __future__ import annotations


class DreamsError(Exception):
    """Base class: a problem the user can fix; the CLI prints it and exits 2."""

    exit_code = 2


class BadInput(DreamsError):
    """Input that cannot be read: names the file and, where known, the line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ""
        if file:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field:
            message = f"{message} (field {field!r})"
        super().__init__(where + message)
        self.reason = message


class NotFound(DreamsError):
    """A store, version, dream or session that does not exist."""


class InvalidState(DreamsError):
    """An operation not allowed in the object's current state (e.g. archive a running dream)."""


class Conflict(DreamsError):
    """A compare-and-swap lost: somebody else moved the head first."""


class DreamFailure(Exception):
    """A dream step failed; ``type`` follows Anthropic's dream error types where they fit."""

    def __init__(self, type: str, message: str):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message

    def __reduce__(self):  # picklable (Prefect stores a failed task's exception), extra attributes kept
        return (self.__class__, (self.type, self.message), dict(self.__dict__))
