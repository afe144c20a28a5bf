import os
import re

from dreaming import ids


def reference_b32(n: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(ids._ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def test_b32_matches_the_plain_definition():
    for length in (1, 7, 10, 16, 26):
        for _ in range(2000):
            n = int.from_bytes(os.urandom(17), "big") % (1 << (5 * length))
            assert ids._b32(n, length) == reference_b32(n, length)


def test_ids_shapes_order_and_determinism():
    a, b = ids.new_id(ids.DREAM), ids.new_id(ids.DREAM)
    assert re.fullmatch(r"drm_[0-9A-HJKMNP-TV-Z]{26}", a)
    assert a[:14] <= b[:14]  # time-ordered prefix
    assert ids.stable_id("sevt", "t", "s", 1) == ids.stable_id("sevt", "t", "s", 1)
    assert ids.stable_id("sevt", "t", "s", 1) != ids.stable_id("sevt", "t", "s", 2)
    assert ids.stable_id("x", "ab", "c") != ids.stable_id("x", "a", "bc")  # parts are delimited


def reference_stable_id(prefix: str, *parts: object) -> str:
    import hashlib

    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return f"{prefix}_{reference_b32(int.from_bytes(h[:16], 'big'), 26)}"


def test_stable_id_and_the_bulk_form_match_the_plain_definition():
    parts = [("sesn_" + os.urandom(4).hex(), n, os.urandom(n % 40).hex() + "é✓\u2028") for n in range(3000)]
    expected = [reference_stable_id("sevt", *p) for p in parts]
    assert [ids.stable_id("sevt", *p) for p in parts] == expected
    assert ids.stable_ids("sevt", ["\x1f".join(map(str, p)) for p in parts]) == expected
    assert ids.stable_ids("sevt", []) == []


def test_new_ids_of_one_millisecond_sort_in_the_order_they_were_made(monkeypatch):
    """Snapshot ids decide which copy of an overlapping export wins ("the earliest snapshot"): ids minted in
    the same millisecond, or after the clock stepped back, must still sort in minting order."""
    import dreaming.ids as I

    clock = iter([1_700_000_000.0] * 50 + [1_699_999_999.0] * 5 + [1_700_000_001.0])
    monkeypatch.setattr(I.time, "time", lambda: next(clock))
    monkeypatch.setattr(I, "_last", [0, 0])
    made = [I.new_id("snp") for _ in range(56)]
    assert made == sorted(made) and len(set(made)) == 56
    assert made[-1][4:14] != made[0][4:14]  # a later millisecond starts a fresh random part
