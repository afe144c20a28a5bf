"""A store's review policy: which of a dream's changes promote on their own and which wait for a person.

The policy is a small pydantic model kept as JSON in ``stores.review_policy`` (NULL: the defaults);
``dreams store policy STORE`` shows and edits it, and the dream flow's ``review_policy`` parameter (a
deployment parameter) overrides fields of it for one run. ``decide`` gives every change of a dream a
``Verdict``: promote now, or wait, naming the **rule** that decided. The rules, in the order they apply:

- ``keep``: a ``keep`` changes nothing; it promotes (``promote_keeps``).
- ``tainted``: new content carrying a taint in ``hold_taints`` (``tool_output``/``untrusted``) waits.
- ``actionable``: new content that ``dreaming.safety.needs_person`` flags (a command, a URL,
  credentials, an injection) waits (``hold_actionable``).
- ``human_memory``: a change that deletes or supersedes (prune, supersede, a merge that folds away) a
  memory a person wrote (one with no session sources, or imported from an instruction file) waits
  (``hold_human_removals``) — unless it is an exact-duplicate merge, which loses nothing.
- ``low_confidence``: confidence below ``min_confidence`` waits.
- ``held_kind``: its ``op:kind`` (or kind, or op) is in ``hold_kinds`` (set by a person) waits.
- ``learned_rejections``: its ``op:kind`` is in ``learned_holds``: people rejected that kind of change
  ``learn_after_rejections`` times in a row (``dreaming.review_stats.learn``); reversible with
  ``dreams store policy STORE --release KEY``.
- ``exact_duplicate``: a merge of memories with the same normalised text promotes
  (``promote_exact_duplicates``).
- ``preference_sessions``: a preference stated by people (taint ``user``) in at least
  ``preference_min_sessions`` sessions promotes; in fewer, it waits.
- ``default``: anything else does what ``default`` says (``promote``: as automatic mode always did).

A change that touches a memory (id or path) a waiting change also touches waits with it
(``depends_on_held``), so that what waits still applies on top of what was promoted.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal, get_args

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dreaming.errors import BadInput
from dreaming.models import Change, Memory, Taint, utcnow

# --- the rules' names: the one vocabulary (verdicts, change_decisions.rule, the CLI, the UI) ----------

Rule = Literal["keep", "tainted", "actionable", "human_memory", "low_confidence", "held_kind",
               "learned_rejections", "exact_duplicate", "preference_sessions", "default", "depends_on_held",
               "require_approval", "gate", "person"]
RULES: tuple[str, ...] = get_args(Rule)
WRITE_OPS = ("add", "update", "merge", "supersede")


class ReviewPolicy(BaseModel):
    """What promotes on its own in automatic mode; every field has a default (the stored JSON may omit it)."""

    model_config = ConfigDict(extra="forbid")

    default: Literal["promote", "wait"] = Field(
        "promote", description="what a change no other rule decides does")
    promote_keeps: bool = Field(True, description="a `keep` (nothing changes) promotes on its own")
    promote_exact_duplicates: bool = Field(
        True, description="a merge of memories with the same normalised text promotes on its own")
    preference_min_sessions: int = Field(
        2, ge=0, description="a preference stated by people (taint user) in at least this many sessions promotes "
        "on its own; in fewer it waits")
    hold_taints: list[Taint] = Field(
        default_factory=lambda: ["tool_output", "untrusted"],
        description="new content with one of these taints waits for a person")
    hold_actionable: bool = Field(
        True, description="new content that tells an agent to run a command, contact a URL, handle credentials "
        "or reads as an injection (dreaming.safety) waits")
    hold_human_removals: bool = Field(
        True, description="deleting or superseding a memory a person wrote waits (exact-duplicate merges excepted)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="a change below this confidence waits")
    hold_kinds: list[str] = Field(
        default_factory=list, description="changes whose op:kind, kind or op is listed wait (set by a person)")
    learned_holds: dict[str, str] = Field(
        default_factory=dict, description="op:kind → why: kinds people rejected repeatedly; they wait (learned, "
        "see `dreams review stats`; release with --release)")
    learn_after_rejections: int = Field(
        3, ge=0, description="a kind rejected this many times in a row by people moves to learned_holds (0: never)")
    edited_at: datetime | None = Field(
        None, description="when a person last edited the policy; rejection streaks count from then")


def kind_key(c: Change) -> str:
    """The change kind counted by stats and learned holds: ``op:kind`` (``add:mistake``, ``prune:fact``)."""
    return f"{c.op}:{c.kind or '-'}"


# --- stored policy -------------------------------------------------------------------------------


def parse(raw, where: str = "review_policy") -> ReviewPolicy:
    """A policy from stored JSON / a flow parameter (dict or JSON text); BadInput naming the field."""
    if raw is None or raw == "":
        return ReviewPolicy()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadInput(f"{where} is not JSON: {e}", field=where) from None
    try:
        return ReviewPolicy.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or where
        raise BadInput(f"{where}: {name}: {err['msg']}", field=f"{where}.{name}") from None


def load(catalog, store_id: str) -> ReviewPolicy:
    with catalog.engine.connect() as conn:
        return load_in(conn, store_id)


def load_in(conn: sa.Connection, store_id: str) -> ReviewPolicy:
    from dreaming.catalog import stores

    raw = conn.execute(sa.select(stores.c.review_policy).where(stores.c.id == store_id)).scalar()
    return parse(raw, f"stores.review_policy of {store_id}")


def save(catalog, store_id: str, policy: ReviewPolicy | None, conn: sa.Connection | None = None) -> None:
    """Store ``policy`` (None: back to the defaults), inside ``conn``'s transaction when given."""
    from dreaming.catalog import stores

    value = None if policy is None else policy.model_dump(mode="json", exclude_defaults=True)
    stmt = stores.update().where(stores.c.id == store_id).values(review_policy=value or None, updated_at=utcnow())
    if conn is not None:
        conn.execute(stmt)
        return
    with catalog.tx() as c:
        c.execute(stmt)


def effective(stored: ReviewPolicy, override: dict | str | None) -> ReviewPolicy:
    """``stored`` with the fields of ``override`` (the flow / deployment parameter) replaced."""
    if not override:
        return stored
    extra = override if isinstance(override, dict) else json.loads(override)
    return parse({**stored.model_dump(mode="json"), **extra}, "review_policy parameter")


def with_setting(policy: ReviewPolicy, assignment: str) -> ReviewPolicy:
    """``policy`` with ``key=value`` applied (lists comma-separated, empty = none; ``learned_holds`` is
    changed with release). The edit time moves: rejection streaks count from now."""
    key, sep, value = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInput(f"--set takes key=value, not {assignment!r}", field="set")
    fields = ReviewPolicy.model_fields
    if key not in fields or key in ("learned_holds", "edited_at"):
        settable = ", ".join(k for k in fields if k not in ("learned_holds", "edited_at"))
        raise BadInput(f"no policy setting {key!r}; settable: {settable}", field=key)
    current = fields[key].annotation
    if str(current).startswith("list"):
        val: object = [v.strip() for v in value.split(",") if v.strip()]
    else:
        val = value.strip()
    return parse({**policy.model_dump(mode="json"), key: val, "edited_at": utcnow().isoformat()},
                 "--set")


def release(policy: ReviewPolicy, key: str) -> ReviewPolicy:
    """``policy`` without the hold ``key`` (learned or set by a person); streaks count from now."""
    if key not in policy.learned_holds and key not in policy.hold_kinds:
        held = [*policy.learned_holds, *policy.hold_kinds]
        raise BadInput(f"{key!r} is not held; held: {', '.join(held) or 'nothing'}", field="release")
    return policy.model_copy(update={
        "learned_holds": {k: v for k, v in policy.learned_holds.items() if k != key},
        "hold_kinds": [k for k in policy.hold_kinds if k != key],
        "edited_at": utcnow(),
    })


# --- deciding per change --------------------------------------------------------------------------


@dataclass
class Verdict:
    change_id: str
    promote: bool
    rule: str
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split()).rstrip(" .")


def human_written(m: Memory) -> bool:
    """A memory a person wrote: imported from an instruction file, or with no session sources."""
    return m.origin is not None or not any(not s.session_id.startswith("store:") for s in m.sources)


def exact_duplicate(c: Change, base: dict[str, Memory]) -> bool:
    if c.op != "merge" or not c.merged_ids or c.memory_id not in base:
        return False
    texts = {_norm(base[m].content) for m in [c.memory_id, *c.merged_ids] if m in base}
    return len(texts) == 1 and all(m in base for m in c.merged_ids) and _norm(c.after or base[c.memory_id].content) in texts


def _writes(c: Change) -> bool:
    return c.op in WRITE_OPS and not (c.op == "supersede" and c.after is None)


def _removed_human(c: Change, base: dict[str, Memory]) -> list[str]:
    gone = list(c.removes())
    if c.op == "supersede" and c.memory_id:
        gone.append(c.memory_id)
    return [base[m].path for m in dict.fromkeys(gone) if m in base and human_written(base[m])]


def _sessions(c: Change) -> int:
    return max(c.support or 0, len({s.session_id for s in c.evidence}))


def decide_one(c: Change, base: dict[str, Memory], policy: ReviewPolicy) -> Verdict:
    """One change's verdict under ``policy`` (see the module docstring for the rules' order)."""
    from dreaming.safety import needs_person

    def wait(rule: str, detail: str) -> Verdict:
        return Verdict(c.change_id, False, rule, detail)

    def go(rule: str, detail: str) -> Verdict:
        return Verdict(c.change_id, True, rule, detail)

    if c.op == "keep":
        return go("keep", "a keep changes nothing") if policy.promote_keeps else wait("keep", "keeps wait (promote_keeps=false)")
    if _writes(c) and c.taint in policy.hold_taints:
        return wait("tainted", f"its content is {c.taint} (taken from what a tool or a page returned)")
    flags = needs_person(c.after) if policy.hold_actionable and _writes(c) and c.after else frozenset()
    if flags:
        return wait("actionable", "it tells an agent to act: " + ", ".join(sorted(flags)))
    dup = exact_duplicate(c, base)
    human = _removed_human(c, base) if policy.hold_human_removals and not dup else []
    if human:
        return wait("human_memory", f"it removes or supersedes what a person wrote: {', '.join(human)}")
    if c.confidence < policy.min_confidence:
        return wait("low_confidence", f"confidence {c.confidence:.2f} < {policy.min_confidence:.2f}")
    key = kind_key(c)
    for k in (key, c.kind, c.op):
        if k and k in policy.hold_kinds:
            return wait("held_kind", f"{k} always waits (hold_kinds)")
    if key in policy.learned_holds:
        return wait("learned_rejections", f"{key}: {policy.learned_holds[key]}")
    if dup and policy.promote_exact_duplicates:
        return go("exact_duplicate", "merges memories with the same text: nothing is lost")
    if c.kind == "preference" and c.taint == "user" and _writes(c):
        n = _sessions(c)
        if n >= policy.preference_min_sessions:
            return go("preference_sessions", f"stated by people in {n} sessions")
        return wait("preference_sessions", f"stated in {n} session(s) < {policy.preference_min_sessions}")
    if policy.default == "promote":
        return go("default", "no rule holds it")
    return wait("default", "the policy's default is to wait")


def _touches(c: Change) -> set[str]:
    out = {f"id:{m}" for m in [c.memory_id, *c.merged_ids, c.superseded_by] if m}
    if c.path:
        out.add(f"path:{c.path}")
    return out


def decide(changes: list[Change], base: list[Memory], policy: ReviewPolicy,
           require_approval: bool = False) -> list[Verdict]:
    """A verdict per change, in ``changes``' order. With ``require_approval`` every change waits."""
    if require_approval:
        return [Verdict(c.change_id, False, "require_approval", "the dream requires approval") for c in changes]
    by_id = {m.memory_id: m for m in base}
    verdicts = [decide_one(c, by_id, policy) for c in changes]
    held: set[str] = set()
    for c, v in zip(changes, verdicts):
        if not v.promote and c.op != "keep":
            held |= _touches(c)
    changed = True
    while changed:  # what touches what waits, waits with it (transitively)
        changed = False
        for c, v in zip(changes, verdicts):
            if v.promote and c.op != "keep" and _touches(c) & held:
                v.promote, v.rule = False, "depends_on_held"
                v.detail = "it touches a memory that a waiting change touches"
                held |= _touches(c)
                changed = True
    return verdicts


def summary(verdicts: list[Verdict]) -> str:
    """``review policy: 2 routine, 1 waits for a person (tainted 1)`` (keeps are not counted)."""
    go = [v for v in verdicts if v.promote and v.rule != "keep"]
    wait = [v for v in verdicts if not v.promote]
    by_rule: dict[str, int] = {}
    for v in wait:
        by_rule[v.rule] = by_rule.get(v.rule, 0) + 1
    text = f"review policy: {len(go)} routine"
    if wait:
        text += f", {len(wait)} wait{'s' if len(wait) == 1 else ''} for a person (" + \
            ", ".join(f"{r} {n}" for r, n in sorted(by_rule.items())) + ")"
    return text
