"""Normalisation for the detectors of ``dreaming.safety``: what text looks like once its Unicode tricks are
undone (invisible and bidi characters, homoglyphs, full-width and mathematical letters, entities, %-escapes,
spaced-out letters), and what it hides (tag characters, HTML comments, base64)."""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote


# zero-width, soft hyphen, Mongolian vowel separator, bidi marks/embeddings/overrides/isolates, word
# joiner and invisible operators, BOM, variation selectors, the tags block; C0/C1 controls but \t \n \r
INVISIBLE_RE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
_TAG_CHARS = re.compile("[\U000e0020-\U000e007e]+")


def strip_invisible(text: str) -> tuple[str, int]:
    """``text`` without invisible, bidi and control characters (tab/newline/CR kept), and how many went."""
    if not text:
        return text, 0
    out, n = INVISIBLE_RE.subn("", text)
    return out, n


# --- normalisation ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """Non-ASCII characters that Unicode lists as confusable with an ASCII letter or digit -> that one."""
    from confusable_homoglyphs import confusables

    table: dict[int, str] = {}
    for ch, glyphs in confusables.confusables_data.items():
        if len(ch) != 1 or ch.isascii():
            continue
        ascii_ = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if ascii_:
            table[ord(ch)] = ascii_[0].lower()
    return table


_PUNCT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2032": "'", "\u00b4": "'",
                        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                        "\uff5c": "|", "\u2223": "|", "\u01c0": "|"})
_SPACED = re.compile(r"(?<![\w])(?:\w[ \t.\-_*·•/]{1,2}){3,}\w(?![\w])")
_WS = re.compile(r"[ \t\r\f\v]+")


def _collapse_spaced(text: str) -> str:
    """'i g n o r e' / 'i.g.n.o.r.e' -> 'ignore' (runs of four or more single characters)."""
    return _SPACED.sub(lambda m: re.sub(r"[ \t.\-_*·•/]", "", m.group(0)), text)


def normalize(text: str, fold: bool = True) -> str:
    """What the detectors read: invisible characters removed, entities and %-escapes decoded, NFKC,
    case folded, confusables folded to ASCII (unless ``fold=False``, for non-Latin scripts), quotes and
    dashes made plain, spaced-out letters collapsed, runs of spaces collapsed."""
    t, _ = strip_invisible(text)
    if "&" in t:
        t = html.unescape(t)
    if "%" in t:
        t = unquote(t)
    if t.isascii():
        t = t.lower()
    else:
        t = unicodedata.normalize("NFKC", t).casefold().translate(_PUNCT)
        if fold:
            t = t.translate(_fold_table())
    if _SPACED_HINT.search(t):
        t = _collapse_spaced(t)
    return _WS.sub(" ", t)


_SPACED_HINT = re.compile(r"(?:^|[^\w])\w[ .*_-]{1,2}\w[ .*_-]{1,2}\w[ .*_-]{1,2}\w(?:$|[^\w])")


_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")


def hidden_texts(text: str) -> list[str]:
    """Content a reader might not see: Unicode tag characters decoded to ASCII, HTML comments, and
    base64 chunks that decode to printable text."""
    out = []
    for m in _TAG_CHARS.finditer(text):
        out.append("".join(chr(ord(c) - 0xE0000) for c in m.group(0)))
    out += re.findall(r"<!--(.*?)-->", text, flags=re.S)
    for m in _B64.finditer(text):
        chunk = m.group(0)
        if chunk.islower() or chunk.isupper() or chunk.count("/") > 2:
            continue  # a word, a constant or a path, not base64 of text
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), altchars=b"-_" if "-" in chunk or "_" in chunk
                                   else None, validate=False)
            s = raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if len(s) >= 8 and sum(c.isprintable() or c.isspace() for c in s) >= 0.95 * len(s) and " " in s:
            out.append(s)
    return out
