"""What a reviewer sees of a dream's changes: per change the verdict of the store's review policy (the rule
that let it through or held it), whether people rejected it before, and its evidence.

``dreams/<id>/review.json`` is written (atomically) when automatic mode splits a dream
(dreaming.promotion.promote_auto); ``review_rows`` joins it with the changeset and the decisions taken
since, for `dreams review show DREAM`; ``review_markdown`` is the same as the Prefect artifact
``review-<dream>`` and the text of the paused run's approval form (flows/dream.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from dreaming.atomic import write_text_atomic
from dreaming.models import Change, Dream

PRIOR = " — previously rejected"
MAX_TEXT = 160


def review_path(catalog, dream_id: str) -> Path:
    return catalog.settings.dreams_dir / dream_id / "review.json"


def read_review(catalog, dream_id: str) -> dict:
    """``review.json`` (``{"summary", "policy", "verdicts": [...]}``), or {} for a dream never split."""
    p = review_path(catalog, dream_id)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def held_rules(catalog, d: Dream) -> dict[str, str]:
    """change id → the rule that held it (only the changes that waited)."""
    return {v["change_id"]: v["rule"] for v in read_review(catalog, d.id).get("verdicts", []) if not v["promote"]}


def previously_rejected(c: Change) -> str | None:
    """The "previously rejected on … by …; N new sessions since" note dreaming.rejections put in its reason."""
    reason = c.reason or ""
    return "previously rejected" + reason.split(PRIOR, 1)[1] if PRIOR in reason else None


def write_review(catalog, d: Dream, changes: list[Change], verdicts: list, policy, summary: str) -> Path:
    by_id = {c.change_id: c for c in changes}
    rows = []
    for v in verdicts:
        c = by_id[v.change_id]
        rows.append({**v.to_dict(), "op": c.op, "kind": c.kind, "path": c.path,
                     "previously_rejected": previously_rejected(c),
                     "evidence_sessions": sorted({e.session_id for e in c.evidence}), "support": c.support})
    body = {"dream_id": d.id, "summary": summary, "policy": policy.model_dump(mode="json"), "verdicts": rows}
    return write_text_atomic(json.dumps(body, indent=2, ensure_ascii=False) + "\n", review_path(catalog, d.id),
                             catalog.settings.staging_dir)


def review_rows(catalog, dream_id: str) -> list[dict]:
    """One row per change: status (promoted | waits | approved | rejected), the rule and why, whether it
    was rejected before, its evidence sessions and its text."""
    from dreaming.dreams import DreamService
    from dreaming.review_stats import decisions_of

    d = catalog.get_dream(dream_id)
    changes = DreamService(catalog).changes(d.id)
    verdicts = {v["change_id"]: v for v in read_review(catalog, d.id).get("verdicts", [])}
    decided = decisions_of(catalog, d.store_id, d.id)
    waiting = d.promotion.state == "awaiting_approval"
    rows = []
    for c in changes:
        v = verdicts.get(c.change_id, {})
        dec = decided.get(c.change_id)
        if dec:
            status = "promoted" if dec["decided_by"] == "policy" else dec["decision"]
        elif waiting:
            status = "waits"
        else:
            status = {"promoted": "approved", "rejected": "rejected"}.get(d.promotion.state, d.promotion.state)
        text = c.after if c.after is not None else (c.before or "")
        rows.append({
            "change_id": c.change_id, "op": c.op, "kind": c.kind, "path": c.path, "status": status,
            "rule": v.get("rule") or ("require_approval" if d.require_approval else None),
            "why": v.get("detail") or "", "previously_rejected": previously_rejected(c),
            "evidence_sessions": sorted({e.session_id for e in c.evidence}), "support": c.support,
            "text": text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…",
            "decided_by": dec["decided_by"] if dec else None,
        })
    return rows


def _cell(v) -> str:
    text = ", ".join(v) if isinstance(v, list) else ("" if v is None else str(v))
    return " ".join(text.replace("|", "\\|").split())


def review_markdown(catalog, dream_id: str) -> str:
    """The review surface as markdown: what waits, why, rejected before?, evidence; then what promoted."""
    d = catalog.get_dream(dream_id)
    rows = review_rows(catalog, dream_id)
    head = [f"## Dream `{d.id}`: what waits for a person", ""]
    if d.promotion.reason:
        head += [d.promotion.reason, ""]
    if d.promotion.promoted_version is not None and d.promotion.state == "awaiting_approval":
        head += [f"The routine part is already the head: `{d.promotion.target_store_id}` "
                 f"v{d.promotion.promoted_version}. Approving promotes the rest on top of it.", ""]
    cols = ["change_id", "op", "kind", "path", "status", "rule", "why", "previously_rejected", "evidence_sessions",
            "text"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    order = {"waits": 0, "rejected": 1, "approved": 2, "promoted": 3}
    for r in sorted(rows, key=lambda r: order.get(r["status"], 4)):
        lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    tail = ["", f"Approve all that waits: `dreams approve {d.id}`; some: `dreams approve {d.id} --change CHG`; "
                f"reject: `dreams reject {d.id} --reason TEXT`."]
    return "\n".join([*head, *lines, *tail]) + "\n"
