"""Preference slots: which setting a user's statement is about (Python over the few matched sentences)."""

from __future__ import annotations

import re

SLOTS: dict[str, list[str]] = {
    "package-manager": ["uv", "pip", "pipenv", "poetry", "conda", "pdm", "hatch", "npm", "yarn", "pnpm", "bun"],
    "test-runner": ["pytest", "unittest", "nose", "jest", "vitest", "mocha"],
    "formatter": ["black", "ruff format", "prettier", "autopep8", "yapf", "gofmt"],
    "linter": ["ruff", "flake8", "pylint", "eslint", "mypy", "pyright"],
    "indentation": ["tabs", "spaces", "2 spaces", "4 spaces", "8 spaces"],
    "quotes": ["single quotes", "double quotes"],
    "editor": ["vim", "neovim", "emacs", "nano", "vscode"],
    "shell": ["bash", "zsh", "fish"],
    "vcs-branch": ["main", "master", "develop", "trunk"],
    "commit-style": ["conventional commits", "imperative"],
    "merge-strategy": ["squash", "rebase", "merge commits"],
    "language": ["english", "french", "german", "spanish", "japanese", "chinese"],
    "seat": ["window seat", "aisle seat", "middle seat"],
    "cabin": ["basic economy", "economy", "business", "first class"],
    "payment": ["credit card", "gift card", "travel certificate", "paypal", "debit card"],
}
_NEG_BEFORE = re.compile(r"\b(never|not|no|stop|avoid|without|instead of|rather than|dont)\b(?:\s+\S+){0,2}\s*$")
_SLOT_RES = {
    slot: re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)) + r")\b")
    for slot, terms in SLOTS.items()
}
_CORRECTION = re.compile(r"^(?:no|nope|wrong|actually)\b\W*")
_PORT = re.compile(r"\bport\s+(\d{2,5})\b")
# "4-space indentation", "indent with 2-spaces" -> "4 spaces"; "one tab" -> "tabs"
_N_SPACES = re.compile(r"\b(\d)[ -]spaces?\b")
# line length: a sentence about lines / line length / line limit with a number of characters
# ("line length/limit/width" and any number of 40-400; or "lines" with a number of characters/columns or
# "lines under/at most/below N"; "functions under 50 lines" is not about line length)
_LINE_TOPIC = re.compile(r"\bline[ -]?(?:length|limit|width)\b|\bmax[ -]line[ -]length\b")
_LINE_NUM = re.compile(r"\b(\d{2,3})\b")
_LINES_NUM = re.compile(r"\blines?\b.*?(?:\b(\d{2,3})[ -]?(?:characters?|chars?|columns?|cols?)\b"
                        r"|\b(?:under|below|within|at most|max|shorter than|no longer than|to|<=?)\s*(\d{2,3})\b)")


def slot_of(normalized: str) -> dict:
    """Guess the slot a preference statement fills: {'key', 'value', 'avoid'} (all None/[] when unknown).

    A term counts as rejected when 'never/not/no/stop/avoid/without/instead of/rather than' stands
    within three words before it; the first term that is not rejected is the value.
    """
    normalized = _CORRECTION.sub("", normalized)  # "no, use X" rejects what came before, not X
    m = _PORT.search(normalized)
    if m:
        return {"key": "pref:port", "value": m.group(1), "avoid": []}
    normalized = _N_SPACES.sub(lambda m: f"{m.group(1)} spaces", normalized)
    if _LINE_TOPIC.search(normalized) or _LINES_NUM.search(normalized):
        nums = [h for h in _LINE_NUM.finditer(normalized) if 40 <= int(h.group(1)) <= 400]
        if nums:
            pos = [h.group(1) for h in nums if not _NEG_BEFORE.search(normalized[: h.start()])]
            neg = sorted({h.group(1) for h in nums} - set(pos))
            return {"key": "pref:line-length", "value": pos[0] if pos else None, "avoid": neg}
    best = None
    for slot, rx in _SLOT_RES.items():
        hits = list(rx.finditer(normalized))
        if not hits:
            continue
        pos = [h.group(1) for h in hits if not _NEG_BEFORE.search(normalized[: h.start()])]
        neg = sorted({h.group(1) for h in hits} - set(pos))
        cand = (hits[0].start(), slot, pos[0] if pos else None, neg)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:
        return {"key": None, "value": None, "avoid": []}
    _, slot, value, neg = best
    return {"key": f"pref:{slot}", "value": value, "avoid": neg}
