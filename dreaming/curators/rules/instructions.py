"""A dream's instructions read as policy: "focus on X" and "ignore Y" narrow what the curator mines."""

from __future__ import annotations

import re

from dreaming.policy import Policy

_FOCUS_RE = re.compile(r"\bfocus(?:\s+only)?\s+on\s+([^.;\n]+)", re.I)
_IGNORE_RE = re.compile(r"\b(?:ignore|skip|exclude|disregard|do not touch|don't touch)\s+([^.;\n]+)", re.I)
_TERM_LEAD = re.compile(
    r"^(?:the\s+)?(?:(?:anything|everything|memories|memory|sessions|errors|mistakes|entries|things)\s+)?"
    r"(?:(?:about|related to|regarding|on|with|mentioning)\s+)?",
    re.I,
)


def parse_instructions(text: str | None) -> tuple[list[str], list[str]]:
    """``(focus_terms, ignore_terms)`` from simple 'focus on X, Y' / 'ignore X' sentences (lowercased)."""

    def terms(rx: re.Pattern) -> list[str]:
        out = []
        for m in rx.finditer(text or ""):
            for part in re.split(r",|\band\b|\bor\b", m.group(1)):
                t = _TERM_LEAD.sub("", part.strip()).strip(" '\"`").lower()
                if t:
                    out.append(t)
        return out

    return terms(_FOCUS_RE), terms(_IGNORE_RE)


def effective_policy(policy: Policy, instructions: str | None) -> Policy:
    focus, ignore = parse_instructions(instructions)
    return policy.model_copy(
        update={
            "focus_terms": sorted({*(t.lower() for t in policy.focus_terms), *focus}),
            "ignore_terms": sorted({*(t.lower() for t in policy.ignore_terms), *ignore}),
        }
    )


# --- text normalisation and near-duplicate tests -------------------------------------------------
