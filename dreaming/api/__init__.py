"""The HTTP API: Anthropic's Dreams and Memory Store endpoints, served by `dreams api` (docs/api.md).

``create_app(settings)`` builds the FastAPI app; the routes (``dreams``, ``memory_stores``) call the
application services (dreaming.dreams, dreaming.stores, dreaming.store_edits) and hold no business logic.
"""

from __future__ import annotations


def create_app(settings=None, **kwargs):
    from dreaming.api.app import create_app as _create

    return _create(settings, **kwargs)


__all__ = ["create_app"]
