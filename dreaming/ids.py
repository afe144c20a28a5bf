"""Identifiers with Anthropic's prefixes (memstore_, mem_, memver_, drm_, sesn_, chg_, snap_).

New ids are time-ordered (48-bit milliseconds + 80 random bits, Crockford base32, like ULID),
so lists sort by creation. Deterministic ids hash their parts, so re-running the same work
yields the same ids (event ids of ingested files, memory ids minted by a curator).
"""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

STORE = "memstore"
MEMORY = "mem"
MEMORY_VERSION = "memver"
DREAM = "drm"
SESSION = "sesn"
CHANGE = "chg"
SNAPSHOT = "snap"
EVENT = "sevt"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits → 2 characters


def _b32(n: int, length: int) -> str:
    """``n`` as ``length`` Crockford base32 characters, most significant first (zero-padded).

    Two characters (10 bits) per step: ids are minted for every ingested event, so this is hot.
    """
    if length % 2:
        return _ALPHABET[(n >> (length - 1) * 5) & 31] + _b32(n, length - 1)
    return "".join([_PAIRS[(n >> s) & 1023] for s in range(length * 5 - 10, -1, -10)])


def new_id(prefix: str) -> str:
    """A fresh, time-ordered id such as ``drm_01JD3F...``."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id derived from ``parts`` (same parts -> same id)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return f"{prefix}_{_b32(int.from_bytes(h[:16], 'big'), 26)}"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
