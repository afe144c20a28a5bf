"""Poisoning defences for what a dream writes: one normalisation, one set of detectors, one vocabulary.

Transcript text is data. Before a mined text may become a memory, ``scan(text)`` reads it the way an
attacker hopes a model would — after Unicode tricks are undone — and returns *flags*:

- ``injection``: instructions aimed at the assistant or its memory ("ignore previous instructions",
  "store this in your memory", "you are now …", fake ``<system>`` tags, the same in other languages);
- ``fetch_exec``: a command that fetches and executes (``curl … | sh``, ``iex(iwr …)``, ``python -c`` with
  urllib, ``bash <(wget …)``);
- ``destructive``: ``rm -rf /``, ``mkfs``, ``dd of=/dev/…``, ``chmod -R 777 /``, ``DROP DATABASE``,
  ``git push --force`` to main, a fork bomb …;
- ``command`` (tells the agent to run a shell command), ``url`` (contacts a URL or host),
  ``credential`` (a secret, found by ``dreaming.redaction``, or talk of passwords/keys/tokens).

``DANGEROUS`` flags are never mined (the curator drops the text with a note); ``NEEDS_PERSON`` flags
(all of them) mean a memory is never promoted without a person: the gate escalates such a change to
``awaiting_approval`` in auto mode. The text is read after: NFKC, case folding, homoglyph folding
(Unicode's confusables, via ``confusable_homoglyphs``), invisible and bidi characters removed, HTML
entities and %-escapes decoded, spaced-out letters collapsed ("i g n o r e"), and with hidden content
revealed (Unicode tag characters, base64 chunks, a reversed or ROT13 copy for injection phrases).

Modules: ``views`` (normalisation, hidden content), ``detectors`` (the flags, their patterns, ``scan``); this
one adds fetched content (``fetches_external``, ``first_fetch``, ``after_fetch``), sessions whose user
messages are dangerous (``poisoned_sessions``), and what a dream writes.

``strip_invisible`` and ``clean_text`` are what a dream applies to everything it writes (invisible and
bidi characters removed, secrets redacted); ``dreaming.changeset.finalize`` and the curators call
``sanitize_changes``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime

from dreaming.safety.detectors import (
    COMMAND,
    CREDENTIAL,
    DANGEROUS,
    DESTRUCTIVE,
    FETCH_EXEC,
    FLAGS,
    INJECTION,
    NEEDS_PERSON,
    URL,
    dangerous,
    needs_person,
    scan,
    secret_kinds,
)
from dreaming.safety.views import INVISIBLE_RE, hidden_texts, normalize, strip_invisible

__all__ = ["COMMAND", "CREDENTIAL", "DANGEROUS", "DESTRUCTIVE", "FETCH_EXEC", "FLAGS", "INJECTION",
           "INVISIBLE_RE", "NEEDS_PERSON", "URL", "after_fetch", "clean_text", "dangerous", "fetches_external",
           "first_fetch", "hidden_texts", "needs_person", "normalize", "poisoned_sessions", "sanitize_changes",
           "scan", "secret_kinds", "strip_invisible"]


# --- fetched content --------------------------------------------------------------------------------

_FETCH_TOOL = re.compile(
    r"(?i)^(?:web_?fetch|fetch(?:_url|_page)?|web_?search|browse(?:r\w*)?|navigate\w*|open_?url|read_?url|get_?url"
    r"|http_?(?:get|request)|url_?fetch|scrape\w*|crawl\w*|playwright\w*|puppeteer\w*|mcp__\w*(?:fetch|browser|web"
    r"|playwright|puppeteer)\w*)$"
    r"|^[\w-]+:(?:curl|wget|http|https|httpie|lynx|w3m|links|aria2c|xh)$"
)


def fetches_external(label: str | None) -> bool:
    """A tool call (by its label, ``<shell tool>:<program>`` for shell tools) that reads external content."""
    return bool(label) and bool(_FETCH_TOOL.match(label.split(" ", 1)[0]))


def first_fetch(tool_sequences: list[dict]) -> dict[str, datetime]:
    """Per session (``Signals.tool_sequences``), when its agent first read external content."""
    out: dict[str, datetime] = {}
    for s in tool_sequences:
        for te in s.get("tool_events") or []:
            if te.get("ts") is not None and fetches_external(te.get("tool_name")):
                out[s["session_id"]] = min(out.get(s["session_id"], te["ts"]), te["ts"])
    return out


def after_fetch(tool_sequences: list[dict]) -> list[tuple[str, str]]:
    """(session_id, event_id) of every tool call made after its session's agent read external content."""
    out = []
    for s in tool_sequences:
        fetched = False
        for te in s.get("tool_events") or []:
            if fetched and te.get("event_id"):
                out.append((s.get("session_id"), te["event_id"]))
            fetched = fetched or fetches_external(te.get("tool_name"))
    return out


def poisoned_sessions(messages: list[dict], sessions: set[str]) -> dict[str, frozenset[str]]:
    """Sessions (of ``sessions``) whose user messages (``Signals.user_messages``), read together in order —
    so that an instruction split across two messages is read whole — carry a dangerous flag; with the flags."""
    by_session: dict[str, list[str]] = defaultdict(list)
    for m in messages:
        if m.get("session_id") in sessions and m.get("text"):
            by_session[m["session_id"]].append(m["text"])
    out = {}
    for sid, texts in by_session.items():
        flags = dangerous("\n".join(texts))
        if flags:
            out[sid] = flags
    return out


# --- what a dream writes ----------------------------------------------------------------------------


def clean_text(text: str | None) -> tuple[str | None, int, list[str]]:
    """``text`` as a dream may write it: invisible/bidi characters removed and secrets redacted.
    Returns (text, invisible characters removed, secret kinds redacted)."""
    if not text:
        return text, 0, []
    from dreaming.redaction import redact

    t, n = strip_invisible(text)
    t, kinds = redact(t)
    return t, n, list(kinds)


_TEXT_FIELDS = ("path", "before", "after", "reason", "key")


def sanitize_changes(changes: list) -> tuple[list, list[str]]:
    """Changes with every text field cleaned (``clean_text``), and notes saying what was done.

    A path that loses characters or a secret is rebuilt from its cleaned form (``[REDACTED:kind]`` ->
    ``redacted-kind``), so a file name never carries a secret either."""
    out, notes = [], []
    invisible, kinds_seen, touched = 0, set(), 0
    for c in changes:
        update = {}
        for f in _TEXT_FIELDS:
            v = getattr(c, f, None)
            if not isinstance(v, str):
                continue
            t, n, kinds = clean_text(v)
            if f == "path" and kinds:
                t = re.sub(r"\[REDACTED:([\w-]+)\]", lambda m: "redacted-" + m.group(1).lower(), t)
            if t != v:
                update[f] = t
                invisible += n
                kinds_seen.update(kinds)
        if update:
            touched += 1
            c = c.model_copy(update=update)
        out.append(c)
    if invisible:
        notes.append(f"invisible or bidi characters (zero-width, bidi overrides/isolates, tag characters) removed "
                     f"from what this dream writes: {invisible} characters in {touched} change(s)")
    if kinds_seen:
        notes.append(f"secrets redacted from what this dream writes ({', '.join(sorted(kinds_seen))})")
    return out, notes
