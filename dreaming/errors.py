"""Typed errors. Every user-facing error says what was wrong and where (file, line, field).

The CLI maps ``DreamsError`` subclasses to exit code 2 (bad usage or input) and prints the message.
The HTTP API (dreaming/api) maps each class to ``http_status`` and Anthropic's ``error_type``, read
from the class here and nowhere else. ``DreamFailure`` carries an Anthropic-style ``error.type`` for
the dream record.
"""

from __future__ import annotations


class DreamsError(Exception):
    """Base class: a problem the user can fix; the CLI prints it and exits 2."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


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
    """A store, version, dream or session that does not exist (over the API: also one of another tenant)."""

    http_status = 404
    error_type = "not_found_error"


class InvalidState(DreamsError):
    """An operation not allowed in the object's current state (e.g. archive a running dream)."""

    http_status = 409
    error_type = "conflict_error"


class Conflict(DreamsError):
    """A compare-and-swap lost: somebody else moved the head first."""

    http_status = 409
    error_type = "conflict_error"


class PathConflict(Conflict):
    """A memory already holds this path in the store."""

    error_type = "memory_path_conflict_error"


class PreconditionFailed(Conflict):
    """A memory's content is not what the caller expected (``content_sha256`` precondition)."""

    error_type = "memory_precondition_failed_error"


class Unauthenticated(DreamsError):
    """An API request without a valid API key."""

    http_status = 401
    error_type = "authentication_error"


class NothingToDream(DreamsError):
    """A dream whose selection holds no session (every session of the scope already dreamt or in review, or
    an empty window): nothing is recorded and no version is written. A quiet night, not a failure: the CLI
    says so and exits 0, a scheduled flow run ends ``Completed`` (named ``Skipped``)."""

    exit_code = 0
    http_status = 409
    error_type = "conflict_error"


class DreamFailure(Exception):
    """A dream step failed; ``type`` follows Anthropic's dream error types where they fit."""

    def __init__(self, type: str, message: str):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message

    def __reduce__(self):  # picklable (Prefect stores a failed task's exception), extra attributes kept
        return (self.__class__, (self.type, self.message), dict(self.__dict__))
