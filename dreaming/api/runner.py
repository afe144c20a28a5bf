"""Runs the dreams the API creates: in this process, on a background thread each, through the same
Prefect flow as `dreams run` (dreaming.cli.cmd_dream.run_dream_flow), so every run shows in the Prefect UI.

The create request returns the `pending` dream at once; the thread holds the dream's lease while the flow
runs (a server killed mid-dream leaves a lease that expires, and `dreams reap` fails the dream). A flow
that cannot even start (Prefect unreachable) fails the dream with ``internal_error``.
"""

from __future__ import annotations

import contextvars
import logging
import threading

from dreaming import leases
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService
from dreaming.models import Dream

log = logging.getLogger("dreaming.api")


class InProcessRunner:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, dream: Dream) -> None:
        ctx = contextvars.copy_context()  # Prefect's settings (a test harness's API URL) travel with it
        t = threading.Thread(target=ctx.run, args=(self._run, dream), name=f"dream-{dream.id}", daemon=True)
        with self._lock:
            self._threads = {k: v for k, v in self._threads.items() if v.is_alive()}
            self._threads[dream.id] = t
        t.start()

    def _run(self, dream: Dream) -> None:
        from dreaming.cli.cmd_dream import run_dream_flow

        try:
            with leases.hold(self.catalog, dream.id):
                run_dream_flow(dream, approval_timeout_s=0)
        except BaseException as e:  # noqa: BLE001 - a thread has nobody to raise to: record it on the dream
            log.exception("dream %s: the flow run did not finish", dream.id)
            try:
                DreamService(self.catalog).fail(dream.id, "internal_error", f"{type(e).__name__}: {e}")
            except Exception:  # noqa: BLE001 - the lease expires and `dreams reap` fails it
                log.exception("dream %s: could not record the failure", dream.id)

    def cancel(self, dream: Dream) -> None:
        """Best effort: ask Prefect to cancel the dream's flow run (the catalog already says canceled)."""
        if dream.flow_run_id:
            from dreaming.cli.cmd_dream import _cancel_flow_run

            _cancel_flow_run(dream.flow_run_id)

    def running(self) -> list[str]:
        with self._lock:
            return [k for k, t in self._threads.items() if t.is_alive()]

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)
