"""Identifiers with Anthropic's prefixes (memstore_, mem_, memver_, drm_, sesn_, chg_, snap_).

New ids are time-ordered (48-bit milliseconds + 80 random bits, Crockford base32, like ULID),
so lists sort by creation. Deterministic ids hash their parts, so re-running the same work
yields the same ids (event ids of ingested files, memory ids minted by a curator).
"""

from __future__ import annotations

import hashlib
import os
import threading
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


_last = [0, 0]  # the last (ms, random) minted by this process: ids of one millisecond still sort in order
_last_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """A fresh, time-ordered id such as ``drm_01JD3F...`` (a ULID). Monotonic within a process: an id minted in
    the same millisecond as the one before it (or after the clock stepped back) takes that one's random part
    plus one, so ids sort in the order they were made ("the earliest snapshot's copy wins" relies on it)."""
    ms = int(time.time() * 1000)
    with _last_lock:
        if ms <= _last[0]:
            ms, rand = _last[0], _last[1] + 1
            if rand >= 1 << 80:  # 2^80 ids in one millisecond: move to the next one
                ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for the increments
        _last[0], _last[1] = ms, rand
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id derived from ``parts`` (same parts -> same id)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return f"{prefix}_{_b32(int.from_bytes(h[:16], 'big'), 26)}"


def stable_ids(prefix: str, keys: list[str]) -> list[str]:
    """``[stable_id(prefix, *parts) for parts in ...]`` in bulk, given each ``"\x1f".join(map(str, parts))``.

    The same ids as ``stable_id``; the base32 step runs over all digests at once in numpy, which
    makes minting an id for every ingested event about 2-3x cheaper than one call per event.
    """
    import numpy as np

    if not keys:
        return []
    sha = hashlib.sha256
    digests = b"".join([sha(k.encode("utf-8")).digest()[:16] for k in keys])
    halves = np.frombuffer(digests, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    hi, lo = halves[:, 0], halves[:, 1]
    # the 130-bit number (2 zero bits, then the 128 bits) in 26 groups of 5 bits, most significant first
    codes = np.empty((len(keys), 26), dtype=np.uint8)
    for k in range(26):
        low_bit = 125 - 5 * k  # bit index of the group's least significant bit
        if low_bit >= 64:
            g = hi >> np.uint64(low_bit - 64)
        elif low_bit + 5 <= 64:
            g = lo >> np.uint64(low_bit)
        else:  # straddles the halves
            g = (hi << np.uint64(64 - low_bit)) | (lo >> np.uint64(low_bit))
        codes[:, k] = g & np.uint64(31)
    text = np.frombuffer(_ALPHABET.encode("ascii"), dtype=np.uint8)[codes].tobytes().decode("ascii")
    head = prefix + "_"
    return [head + text[i : i + 26] for i in range(0, 26 * len(keys), 26)]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
