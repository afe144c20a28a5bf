"""The dream's diff, rendered once for every place a person reads it.

``render_report`` → Markdown (report.md and the Prefect markdown artifact); ``diff_rows`` → the
rows of the table artifact and of ``dreams diff --json``.
"""

from __future__ import annotations

from dreaming.changeset import OP_ORDER
from dreaming.models import Change, Dream
from dreaming.safety import clean_text

OP_TITLES = {
    "add": "Added — recurring patterns learned from sessions",
    "update": "Updated",
    "merge": "Merged duplicates",
    "supersede": "Superseded — contradicted by a later value",
    "prune": "Pruned — expired, superseded or unsupported",
    "keep": "Kept",
}


def _evidence(c: Change, limit: int = 3) -> str:
    if not c.evidence:
        return "—"
    shown = [f"`{e.session_id}`" + (f"#{e.event_id}" if e.event_id else "") for e in c.evidence[:limit]]
    more = len(c.evidence) - limit
    sessions = len({e.session_id for e in c.evidence})
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "") + f" — {sessions} session(s)"


def _safe(text: str | None) -> str | None:
    """What a person reads is cleaned like what a dream writes: no secret, no invisible character."""
    return clean_text(text)[0] if text else text


def _clip(text: str | None, n: int = 240) -> str:
    if text is None:
        return "∅"
    text = " ".join(_safe(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def grouped(changes: list[Change]) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for c in sorted(changes, key=lambda c: (OP_ORDER[c.op], c.path or "")):
        out.setdefault(c.op, []).append(c)
    return out


def render_report(dream: Dream, changes: list[Change], notes: list[str] | None = None) -> str:
    counts = {op: len(cs) for op, cs in grouped(changes).items()}
    lines = [
        f"# Dream `{dream.id}`",
        "",
        f"- store: `{dream.store_id}` — base v{dream.base_version} → candidate v{dream.candidate_version}",
        f"- sessions: {len(dream.session_ids)} · curator: {dream.curator} · model: {dream.model.get('id')}",
        "- changes: " + (", ".join(f"{op} {n}" for op, n in counts.items()) or "none"),
    ]
    if dream.instructions:
        lines.append(f"- instructions: {_clip(dream.instructions, 300)}")
    for op, cs in grouped(changes).items():
        if op == "keep":
            continue
        lines += ["", f"## {OP_TITLES[op]} ({len(cs)})", ""]
        for c in cs:
            lines.append(f"### `{_safe(c.path) or c.memory_id}` · {c.change_id}")
            lines.append(f"*{_clip(c.reason, 2000)}*  ")
            if c.op == "merge":
                lines.append(f"merged: {', '.join(f'`{m}`' for m in c.merged_ids)}  ")
            if c.before is not None:
                lines.append(f"- before: {_clip(c.before)}")
            if c.after is not None:
                lines.append(f"+ after: {_clip(c.after)}")
            lines.append(f"evidence: {_evidence(c)} · confidence {c.confidence:.2f}"
                         + (f" · taint **{c.taint}**" if c.taint and c.taint != "trusted" else ""))
            lines.append("")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_clip(n, 2000)}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def diff_rows(changes: list[Change]) -> list[dict]:
    return [
        {
            "change_id": c.change_id,
            "op": c.op,
            "path": _safe(c.path) or "",
            "memory_id": c.memory_id or "",
            "reason": _safe(c.reason),
            "before": _clip(c.before, 120),
            "after": _clip(c.after, 120),
            "sessions": len({e.session_id for e in c.evidence}),
            "confidence": round(c.confidence, 2),
            "taint": c.taint or "",
            "decision": c.decision,
        }
        for cs in grouped(changes).values()
        for c in cs
    ]
