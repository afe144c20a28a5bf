"""Opaque cursors for ``page`` / ``next_page``: a keyset (the last item's sort key), base64url JSON."""

from __future__ import annotations

import base64
import json

from dreaming.errors import BadInput


def encode(*key: object) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(cursor: str | None, size: int) -> list | None:
    """The keyset of ``cursor`` (a list of ``size`` items), or None for the first page; BadInput naming
    ``page`` when it is not one of ours."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except ValueError:
        raise BadInput("not a page cursor returned by this server", field="page") from None
    if not isinstance(key, list) or len(key) != size:
        raise BadInput("not a page cursor returned by this server", field="page")
    return key
