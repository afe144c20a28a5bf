"""Retry conditions shared by the tasks: retry what may get better, never what is deterministic."""

from __future__ import annotations

from dreaming.errors import DreamFailure, DreamsError


def _exception(state) -> BaseException | None:
    try:
        state.result()
    except BaseException as e:  # noqa: BLE001 - we classify it
        return e
    return None


def retry_transient(task, task_run, state) -> bool:
    """True for errors that may pass on a retry (LLM 429/529/5xx, connection, timeouts, I/O)."""
    exc = _exception(state)
    if exc is None or isinstance(exc, (DreamFailure, DreamsError)):
        return False
    from dreaming.curators.claude import is_transient_error

    return is_transient_error(exc) or isinstance(exc, (OSError, TimeoutError))
