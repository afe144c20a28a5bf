"""SIGINT / SIGTERM: the CLI ends promptly, says what was done and what was left, and exits 128 + the
signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell does.

``install()`` (called by ``dreaming.cli.main``) puts one handler on both signals. The first signal
raises ``Interrupted`` in the main thread, so that ``finally`` blocks and Prefect's crash handling run
(the flow run is marked Crashed, its dream failed ``crashed``). While a flow runs, Prefect's own SIGTERM
handler stands in for ours and raises its ``TerminationSignal`` instead; that is handled the same way.
Either way a watchdog is armed (it learns of every signal through ``signal.set_wakeup_fd``, whoever's
handler runs): if the process has not left ``GRACE_S`` seconds later — a thread pool waiting for a
running dream, a hung call — it prints the summary and leaves. A second signal leaves at once. Leaving
runs the ``atexit`` callbacks (a temporary Prefect server is stopped) and then ``os._exit``: no wait for
worker threads.

Leaving mid-dream is safe: every file is staged and renamed into place and catalog rows are written
last (dreaming.atomic, dreaming.dreams), so a cut-off dream leaves no half-written store version; a
dream still ``running`` keeps its lease row until the lease expires and is then failed (``crashed``)
by the reaper (``dreams reap``, or the next dream of its store), exactly as after a kill -9.

A command that runs long registers what it would report with ``with interrupt.summary(fn):`` — ``fn``
returns the lines (what finished, what was left) and is called once, on the way out.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

GRACE_S = float(os.environ.get("DREAMS_SIGNAL_GRACE_S", "10"))
"""Seconds a graceful exit may take after the first signal before the process leaves with os._exit."""

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_summaries: list[Callable[[], list[str]]] = []
_lock = threading.Lock()
_state: dict = {"signum": None, "at": None, "reported": False, "watch": 0, "handler": 0}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT/SIGTERM. A KeyboardInterrupt, so that code which
    cleans up on Ctrl-C (Prefect marks its runs Crashed, asyncio cancels its tasks) does so for both, and
    neither a task retry nor an ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = exit_code(signum)


def exit_code(signum: int) -> int:
    return 128 + int(signum)


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def install() -> None:
    """Handle SIGINT and SIGTERM in this (main) thread and start the watchdog; a no-op elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(signum=None, at=None, reported=False, watch=0, handler=0)
    for s in SIGNALS:
        signal.signal(s, _handler)
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(r,), name="dreams-signals", daemon=True).start()


@contextmanager
def summary(fn: Callable[[], list[str]]) -> Iterator[None]:
    """While the block runs, ``fn()`` gives the lines printed if a signal ends the command."""
    _summaries.append(fn)
    signum = None
    try:
        yield
    except BaseException as e:
        signum = from_exception(e)
        raise
    finally:
        signum = signum or pending()
        if signum is not None:  # report while the block's summary is still registered
            report(signum)
        if fn in _summaries:
            _summaries.remove(fn)


def report(signum: int) -> None:
    """Print, once, that the command was interrupted and the registered summaries (on stderr)."""
    with _lock:
        if _state["reported"]:
            return
        _state["reported"] = True
    lines = [f"interrupted by {name(signum)}: stopping (exit {exit_code(signum)})"]
    for fn in list(_summaries):
        try:
            lines.extend(fn())
        except Exception as e:  # noqa: BLE001 - the summary is best effort; the exit is not
            lines.append(f"(could not summarise: {type(e).__name__}: {e})")
    try:
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed stderr must not keep the process alive
        pass


def leave(signum: int) -> None:
    """Report, run the atexit callbacks (a temporary Prefect server stops) and end the process now,
    without waiting for other threads."""
    report(signum)
    try:
        sys.stdout.flush()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - nothing may keep the process alive now
        pass
    os._exit(exit_code(signum))


def _note(signum: int, channel: str) -> int:
    """Record a signal heard on ``channel`` (``watch``: the wakeup fd, ``handler``: our handler; each
    hears a delivery once); returns how many that channel heard. The first one arms the watchdog."""
    with _lock:
        _state[channel] += 1
        count = _state[channel]
        first = _state["signum"] is None
        if first:
            _state.update(signum=signum, at=datetime.now(UTC))
    if first:
        watchdog = threading.Timer(GRACE_S, leave, args=(signum,))
        watchdog.daemon = True
        watchdog.start()
    return count


def _watch(fd: int) -> None:
    """The watchdog's ear: the C-level handler writes each signal's number to the wakeup fd, also
    while Prefect's handler (not ours) is installed."""
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in SIGNALS and _note(signum, "watch") > 1:
                leave(_state["signum"])


def _handler(signum: int, _frame) -> None:
    if _note(signum, "handler") > 1:  # a second signal: no more waiting
        leave(_state["signum"])
    raise Interrupted(signum)


def from_exception(e: BaseException) -> int | None:
    """The signal behind ``e``: our ``Interrupted``, a KeyboardInterrupt, or Prefect's TerminationSignal."""
    if isinstance(e, Interrupted):
        return e.signum
    if isinstance(e, KeyboardInterrupt):
        return signal.SIGINT
    sig = getattr(e, "signal", None)
    if type(e).__name__ == "TerminationSignal" and isinstance(sig, int):
        return sig
    return None


def pending() -> int | None:
    """The signal received by this process since ``install()``, if any."""
    return _state["signum"]


def received_at() -> datetime | None:
    """When the first signal arrived (UTC), if one did."""
    return _state["at"]
