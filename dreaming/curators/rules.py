"""The offline, deterministic curator ("rules").

Same inputs -> byte-identical changeset: no wall clock (``inp.now`` is the reference time), no
randomness, stable ids (``dreaming.ids.stable_id``), every collection sorted before it is emitted.

Two halves (docs/curation.md lists every rule and threshold):

- housekeeping of the base store: prune expired entries; supersede contradicted entries on the same
  ``key`` (latest event time wins); merge exact and near duplicates (MinHash LSH blocking, rapidfuzz
  scoring, number/negation/literal guards); prune stale unsupported entries (never pinned ones);
- mining of the sessions' signals: recurring mistakes with their workaround, converged workflows,
  shared preferences. Only what recurs in ``policy.min_sessions`` distinct sessions is proposed; what
  the store already holds is updated (new sources) rather than added again.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import combinations

from datasketch import MinHash, MinHashLSH
from rapidfuzz import fuzz

from dreaming import ids, safety
from dreaming.changeset import finalize
from dreaming.curators.base import CurationInput, CurationResult
from dreaming.models import Change, Memory, Source, merge_sources
from dreaming.policy import Policy
from dreaming.redaction import redact
from dreaming.signals import slot_of

_MIN_TS = datetime.min.replace(tzinfo=UTC)
_TAINT_RANK = {"trusted": 0, "user": 1, "tool_output": 2, "untrusted": 3}

# --- instructions -----------------------------------------------------------------------------

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

_CONTRACTIONS = re.compile(r"\b(do|does|did|can|should|would|is|are|was|were|must|have|has)n[’']?t\b")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_./:+=@#-]*")
_NEG = {"never", "not", "no", "avoid", "without", "stop", "nothing", "none", "cannot", "neither", "nor"}
_ANTONYMS = {"enable": "ENABLE", "enabled": "ENABLE", "disable": "DISABLE", "disabled": "DISABLE",
             "allow": "ALLOW", "allowed": "ALLOW", "deny": "DENY", "denied": "DENY", "forbid": "DENY",
             "true": "TRUE", "false": "FALSE", "include": "INCLUDE", "exclude": "EXCLUDE",
             "before": "BEFORE", "after": "AFTER", "increase": "UP", "decrease": "DOWN"}
_STOP = {"a", "an", "the", "to", "for", "of", "in", "on", "at", "by", "and", "or", "is", "are", "be", "it", "this",
         "that", "with", "use", "uses", "using", "always", "please", "should", "must", "when", "you", "we", "i",
         "our", "your", "all", "any", "as", "from", "into", "do", "does", "so", "then", "than", "its"}


def norm_text(text: str) -> str:
    """Lowercase, NFKC, contractions expanded, markup and punctuation dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _CONTRACTIONS.sub(lambda m: m.group(1) + " not", t)
    return " ".join(tok.rstrip(".:/-") for tok in _TOKEN.findall(t) if tok.rstrip(".:/-"))


def _stem(tok: str) -> str:
    for suf in ("ing", "ed", "es", "s"):
        if len(tok) > len(suf) + 3 and tok.endswith(suf):
            return tok[: -len(suf)]
    return tok


class _Fp:
    """What the near-duplicate test compares: normalised text, literals, polarity, content stems."""

    __slots__ = ("norm", "literals", "polarity", "stems")

    def __init__(self, text: str):
        self.norm = norm_text(text)
        toks = self.norm.split()
        self.literals = frozenset(t for t in toks if any(c.isdigit() for c in t) or "/" in t or "=" in t)
        self.polarity = (any(t in _NEG for t in toks), frozenset(_ANTONYMS[t] for t in toks if t in _ANTONYMS))
        self.stems = frozenset(_stem(t) for t in toks if t not in _STOP and t not in _NEG and t not in _ANTONYMS)


def near_duplicate(a: _Fp, b: _Fp, policy: Policy) -> float | None:
    """The similarity score when ``a`` and ``b`` say the same thing, else None.

    Guards first (any difference is a different statement): the numbers/paths/ids they mention,
    their negation and antonym words, and content words that differ on both sides (unless those
    are typos of each other). Then rapidfuzz token_set_ratio and token_sort_ratio thresholds.
    """
    if a.norm == b.norm:
        return 1.0
    if a.literals != b.literals or a.polarity != b.polarity:
        return None
    ua, ub = a.stems - b.stems, b.stems - a.stems
    if ua and ub:
        for xs, ys in ((ua, ub), (ub, ua)):
            if not all(any(fuzz.ratio(x, y) >= 80 for y in ys) for x in xs):
                return None
    score = fuzz.token_set_ratio(a.norm, b.norm) / 100
    if score < policy.near_duplicate_ratio or fuzz.token_sort_ratio(a.norm, b.norm) / 100 < policy.near_duplicate_sort_ratio:
        return None
    return round(score, 4)


def _minhashes(fps: list[_Fp], policy: Policy) -> list[MinHash]:
    return MinHash.bulk([[s.encode("utf-8") for s in sorted(fp.stems | fp.literals)] or [b"\x00"] for fp in fps],
                        num_perm=policy.lsh_num_perm, seed=1)


def cluster_duplicates(texts: list[str], policy: Policy, blockers: list[str | None] | None = None):
    """Groups of indexes of ``texts`` that are exact or near duplicates, with the best pair score.

    Candidate pairs come from exact normalised-text buckets and MinHash LSH buckets (no all-pairs
    comparison); ``blockers`` (e.g. memory keys) keep items with different non-null values apart.
    Returns ``[(sorted indexes, min score), ...]`` for groups of two or more, in index order.
    """
    n = len(texts)
    fps = [_Fp(t) for t in texts]
    blockers = blockers or [None] * n
    pairs: set[tuple[int, int]] = set()
    # exact blocking on what the guards require to be equal (literals, polarity), then exact-text
    # buckets and MinHash LSH inside each block: never an all-pairs comparison over the store
    blocks: dict[tuple, list[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        blocks[(fp.literals, fp.polarity)].append(i)
    for block in blocks.values():
        if len(block) < 2:
            continue
        by_norm: dict[str, list[int]] = defaultdict(list)
        for i in block:
            by_norm[fps[i].norm].append(i)
        for group in by_norm.values():  # identical texts: link each to the first with a compatible blocker
            firsts: dict[str | None, int] = {}
            for i in group:
                j = firsts.setdefault(blockers[i], i) if blockers[i] else group[0]
                if j != i:
                    pairs.add((j, i))
        reps = [g[0] for g in by_norm.values()]  # one representative per distinct text
        if len(reps) < 2:
            continue
        if len(reps) <= 16:
            pairs.update(combinations(sorted(reps), 2))
            continue
        lsh = MinHashLSH(threshold=policy.lsh_threshold, num_perm=policy.lsh_num_perm)
        for i, mh in zip(reps, _minhashes([fps[i] for i in reps], policy), strict=True):
            for j in lsh.query(mh):
                pairs.add((min(i, j), max(i, j)))
            lsh.insert(i, mh)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    scores: dict[int, float] = {}
    for i, j in sorted(pairs):
        if blockers[i] and blockers[j] and blockers[i] != blockers[j]:
            continue
        s = near_duplicate(fps[i], fps[j], policy)
        if s is None:
            continue
        ri, rj = find(i), find(j)
        root = min(ri, rj)
        parent[max(ri, rj)] = root
        scores[root] = min(scores.get(ri, 1.0), scores.get(rj, 1.0), s)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [(g, scores.get(root, 1.0)) for root, g in sorted(groups.items()) if len(g) > 1]


# --- helpers ------------------------------------------------------------------------------------


def event_time(m: Memory) -> datetime | None:
    """When a memory was last supported by an event (last_seen, else its newest source)."""
    times = [s.ts for s in m.sources if s.ts]
    cands = [t for t in [m.last_seen, *times] if t]
    return max(cands) if cands else None


def _order_time(m: Memory) -> tuple:
    return (event_time(m) or m.updated_at or m.created_at or _MIN_TS, m.updated_at or _MIN_TS, m.memory_id)


def _worst(*taints: str | None) -> str:
    vals = [t for t in taints if t]
    return max(vals, key=_TAINT_RANK.__getitem__) if vals else "trusted"


def _confidence(n: int, factor: float = 1.0) -> float:
    return round(min(0.99, (1 - 0.5**n)) * factor, 3)


def _clean(s: str | None, limit: int = 120) -> str:
    s = " ".join((s or "").replace("`", "'").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _slug(text: str, limit: int = 60) -> str:
    """A file-name slug of ``text``; secrets are redacted first (their case matters to the detector), so a
    path never spells one out (``[REDACTED:github-token]`` slugs to ``redacted-github-token``)."""
    text, _ = redact(safety.strip_invisible(text)[0])
    words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", text).lower())
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or "item"


def _sources(rows: list[dict], sid="session_id", eid="event_id", ts="ts") -> list[Source]:
    return [Source(session_id=r[sid], event_id=r.get(eid), ts=r.get(ts)) for r in rows if r.get(sid)]


def _cap(sources: list[Source], cap: int) -> list[Source]:
    """One source per session (earliest first), at most ``cap``; then sorted by time."""
    firsts: dict[str, Source] = {}
    for s in sorted(merge_sources(sources), key=Source.sort_key):
        firsts.setdefault(s.session_id, s)
    return sorted(list(firsts.values())[:cap], key=Source.sort_key)


def _short_command(command: str | None, tool: str | None) -> str:
    """'uv pip install' from 'uv pip install requests==2.3'; the tool label for non-shell tools."""
    if not tool or ":" not in tool or not command:
        return tool or "the tool"
    words = []
    for w in command.strip().splitlines()[0].split():
        if words and (any(c in w for c in "/=<>|&;$'\"") or w[0].isdigit()):
            break
        if w in ("cd",) and not words:
            continue
        words.append(w)
        if len(words) == 3:
            break
    return " ".join(words) or tool


_PLACEHOLDER = re.compile(r"<(?:n|q|id|hex|uuid|url|path)>")
_WORKAROUND_FIELDS = ("workaround_event_id", "workaround_ts", "workaround_tool", "workaround_input",
                      "workaround_command", "workaround_text")


def _json_obj(text: str | None) -> dict | None:
    try:
        v = json.loads(text) if text and text.lstrip().startswith("{") else None
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _retry_text(call: str, rows: list[dict]) -> str:
    """How a retry of the same call differed: the input keys most often added, else changed, else none."""
    added: Counter = Counter()
    changed = same = 0
    for r in rows:
        before, after = _json_obj(r.get("failed_command")), _json_obj(r.get("workaround_input"))
        if before is not None and after is not None:
            added.update(sorted(set(after) - set(before)))
            if after == before:
                same += 1
            elif set(after) == set(before):
                changed += 1
        elif r.get("failed_command") == r.get("workaround_command"):
            same += 1
    if added:
        top = sorted(added.items(), key=lambda kv: (-kv[1], kv[0]))
        keys = [k for k, c in top if c == top[0][1]][:3]
        return f"retry `{_clean(call, 80)}` with {', '.join(f'`{_clean(k, 40)}`' for k in keys)} added"
    if same > changed:
        return f"retry `{_clean(call, 80)}` unchanged (the failure was transient)"
    return f"retry `{_clean(call, 80)}` with corrected arguments"


def _fold_same_message(prefs: list[dict]) -> list[dict]:
    """Sentences of one message about one slot are one statement: "Don't use pip. Always use uv." is
    (value uv, avoid pip), not a separate "don't use pip" preference. A sentence of the slot that only
    rejects options is folded into the message's first sentence that names a value (unless it rejects
    that very value); the texts are joined in signal order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in prefs:
        if p.get("key"):
            groups[(p["session_id"], p["event_id"], p["key"])].append(p)
    target: dict[int, dict] = {}  # id(row) -> the row it is folded into
    for group in groups.values():
        valued = [g for g in group if g.get("value")]
        if not valued:
            continue
        head = valued[0]
        for g in group:
            if not g.get("value") and head["value"] not in (g.get("avoid") or []):
                target[id(g)] = head
    out = []
    for p in prefs:
        if id(p) in target:
            continue
        parts = [g for g in groups.get((p["session_id"], p["event_id"], p.get("key")), [])
                 if target.get(id(g)) is p] if p.get("key") else []
        if parts:
            rows = [g for g in groups[(p["session_id"], p["event_id"], p["key"])] if g is p or g in parts]
            p = {**p, "text": ". ".join(g["text"] for g in rows), "normalized": " ".join(g["normalized"] for g in rows),
                 "avoid": sorted({a for g in rows for a in (g.get("avoid") or [])})}
        out.append(p)
    return out


def _wilson_lower(k: int, n: int, z: float = 1.0) -> float:
    """Lower bound of the Wilson score interval of k successes in n trials (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = k / n
    d = 1 + z * z / n
    return (p + z * z / (2 * n) - z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5)) / d


def _shifted(a: tuple, b: tuple) -> bool:
    """``a`` and ``b`` overlap in all but one step of the shorter: a suffix of one is a prefix of the other."""
    k = min(len(a), len(b)) - 1
    return k >= 2 and (a[-k:] == b[:k] or b[-k:] == a[:k])


def _contains(big: tuple, small: tuple) -> bool:
    """``small`` occurs contiguously in ``big`` (and is shorter)."""
    n = len(small)
    return n < len(big) and any(big[i: i + n] == small for i in range(len(big) - n + 1))


class RulesCurator:
    """Deterministic offline curator (see module docstring)."""

    name = "rules"

    def curate(self, inp: CurationInput) -> CurationResult:
        return _Run(inp).run()


class _Run:
    def __init__(self, inp: CurationInput):
        self.inp = inp
        self.policy = effective_policy(inp.policy, inp.instructions)
        self.now = inp.now if inp.now.tzinfo else inp.now.replace(tzinfo=UTC)
        self.base = sorted(inp.base, key=lambda m: (m.path, m.memory_id))
        self.by_id = {m.memory_id: m for m in self.base}
        self.changes: list[Change] = []
        self.notes: list[str] = []
        self.removed: set[str] = set()  # base ids removed by a change
        self.touched: set[str] = set()  # base ids given new support by mining
        self.redirect: dict[str, str] = {}  # merged loser -> survivor
        self.used_paths = {m.path for m in self.base}
        self.ignored = {m.memory_id for m in self.base if self._ignored(m.path, m.key or "", m.content)}
        self.input_sessions = set(inp.session_ids)
        self.fetched_at = safety.first_fetch(inp.signals.tool_sequences)  # session -> first external read

    # -- utilities --
    def _ignored(self, *texts: str) -> bool:
        blob = " ".join(t for t in texts if t).lower()
        return any(term in blob for term in self.policy.ignore_terms)

    def _focused(self, *texts: str) -> bool:
        if not self.policy.focus_terms:
            return True
        blob = " ".join(t for t in texts if t).lower()
        return any(term in blob for term in self.policy.focus_terms)

    def _mem_evidence(self, *mems: Memory) -> list[Source]:
        """Evidence for housekeeping on base memories: their sources from this dream's input sessions
        when they have any (what the gate accepts), else their own recorded sources, else a pointer at
        the memory in the base version (``store:<store_id>`` / memory id) for hand-written entries."""
        union = merge_sources(*(m.sources for m in mems))
        inside = [s for s in union if s.session_id in self.input_sessions]
        ev = _cap(inside or union, self.policy.max_evidence)
        if ev:
            return ev
        m = mems[0]
        return [Source(session_id=f"store:{self.inp.store.get('id', '')}", event_id=m.memory_id,
                       ts=m.updated_at or m.created_at)]

    def _alive(self, mid: str) -> str | None:
        while mid in self.redirect:
            mid = self.redirect[mid]
        return None if mid in self.removed else mid

    def _free_path(self, path: str, key: str) -> str:
        if path not in self.used_paths:
            self.used_paths.add(path)
            return path
        stem = path[:-3] if path.endswith(".md") else path
        alt = f"{stem}-{ids.sha256_text(key)[:6]}.md"
        self.used_paths.add(alt)
        return alt

    # -- the run --
    def run(self) -> CurationResult:
        self.redact_base()
        self.prune_expired()
        self.supersede_by_key()
        self.merge_duplicates()
        self.mine_mistakes()
        self.mine_workflows()
        self.mine_preferences()
        self.prune_stale()
        changes, notes = safety.sanitize_changes(self.changes)
        return CurationResult(changes=finalize(changes, self.inp.dream_id), notes=sorted(self.notes + notes))

    def live(self) -> list[Memory]:
        return [m for m in self.base if m.memory_id not in self.removed and m.memory_id not in self.ignored]

    # -- housekeeping --
    def redact_base(self) -> None:
        """A stored memory that holds a secret (written by hand, or before redaction existed) is updated
        to its redacted content: a version a dream writes never carries a secret."""
        for m in self.live():
            text, kinds = redact(m.content)
            if kinds:
                self.changes.append(Change(
                    op="update", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
                    after=text, reason=f"a secret was redacted ({', '.join(kinds)})",
                    evidence=self._mem_evidence(m), support=m.support, confidence=m.confidence, taint=m.taint,
                ))

    def prune_expired(self) -> None:
        if not self.inp.age_out:
            return
        for m in self.live():
            if m.valid_until is not None and m.valid_until < self.now and not m.pinned:
                self.removed.add(m.memory_id)
                self.changes.append(Change(
                    op="prune", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
                    reason=f"expired: valid_until {m.valid_until.isoformat()} is before {self.now.isoformat()}",
                    evidence=self._mem_evidence(m), confidence=m.confidence, support=m.support,
                ))

    def supersede_by_key(self) -> None:
        groups: dict[str, list[Memory]] = defaultdict(list)
        for m in self.live():
            if m.key:
                groups[m.key].append(m)
        for key in sorted(groups):
            mems = sorted(groups[key], key=_order_time, reverse=True)
            if len(mems) < 2:
                continue
            winner, wfp = mems[0], _Fp(mems[0].content)
            dupes = []
            for loser in mems[1:]:
                if near_duplicate(wfp, _Fp(loser.content), self.policy) is not None:
                    dupes.append(loser)  # same value: the merge step folds it into the winner
                    continue
                if loser.pinned:
                    self.notes.append(f"{loser.path}: contradicted by {winner.path} on key {key} but pinned; kept")
                    continue
                self.removed.add(loser.memory_id)
                wt, lt = event_time(winner), event_time(loser)
                self.changes.append(Change(
                    op="supersede", memory_id=loser.memory_id, superseded_by=winner.memory_id, path=loser.path,
                    kind=loser.kind, key=key, before=loser.content, after=None,
                    reason=(f"contradicted on key {key} by {winner.path} ({_clean(winner.content, 80)!r}), "
                            f"whose evidence is newer ({wt.isoformat() if wt else 'n/a'} > "
                            f"{lt.isoformat() if lt else 'n/a'}): latest value by event time wins"),
                    evidence=self._mem_evidence(winner, loser), confidence=winner.confidence, support=loser.support,
                ))
            if dupes:
                self._merge([winner, *dupes], 1.0, f"same key {key} and same value")

    def merge_duplicates(self) -> None:
        mems = self.live()
        if len(mems) < 2:
            return
        groups = cluster_duplicates([m.content for m in mems], self.policy, [m.key for m in mems])
        for idx, score in groups:
            group = [mems[i] for i in idx]
            exact = len({norm_text(m.content) for m in group}) == 1
            self._merge(group, score, "exact duplicate (same normalised text)" if exact else
                        f"near duplicate (similarity {score:.2f})")

    def _merge(self, group: list[Memory], score: float, why: str) -> None:
        group = [m for m in group if self._alive(m.memory_id) == m.memory_id]
        if len(group) < 2:
            return
        survivor = sorted(group, key=lambda m: (not m.pinned, -m.support, -(_order_time(m)[0].timestamp()),
                                                -len(m.content), m.memory_id))[0]
        losers = sorted(m.memory_id for m in group if m is not survivor)
        for mid in losers:
            self.removed.add(mid)
            self.redirect[mid] = survivor.memory_id
        union = merge_sources(*(m.sources for m in group))
        self.changes.append(Change(
            op="merge", memory_id=survivor.memory_id, merged_ids=losers, path=survivor.path, kind=survivor.kind,
            key=survivor.key or next((m.key for m in group if m.key), None), before=survivor.content,
            after=survivor.content,
            reason=f"{why}: {len(losers)} entr{'y' if len(losers) == 1 else 'ies'} folded into {survivor.path} "
                   f"({', '.join(self.by_id[i].path for i in losers)})",
            evidence=self._mem_evidence(*group), support=len({s.session_id for s in union}) or survivor.support,
            confidence=max(m.confidence for m in group), taint=_worst(*(m.taint for m in group)),
        ))

    def prune_stale(self) -> None:
        if self.policy.stale_after_days <= 0 or not self.inp.age_out:
            return
        cutoff = self.now - timedelta(days=self.policy.stale_after_days)
        for m in self.live():
            if m.pinned or m.memory_id in self.touched or m.memory_id in self.redirect.values():
                continue
            t = event_time(m)
            if t is None:
                if not self.policy.prune_unsourced:
                    continue
                t = m.updated_at or m.created_at
            if t is None or t >= cutoff:
                continue
            self.removed.add(m.memory_id)
            self.changes.append(Change(
                op="prune", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
                reason=f"stale: no supporting event since {t.isoformat()} (more than "
                       f"{self.policy.stale_after_days} days before {self.now.isoformat()})",
                evidence=self._mem_evidence(m), confidence=m.confidence, support=m.support,
            ))

    # -- mining: shared plumbing --
    def _existing(self, key: str | None, path: str, content: str) -> Memory | None:
        """The live base memory a mined item corresponds to: same key, same path, or a near duplicate."""
        live = self.live()
        for m in live:
            if key and m.key == key:
                return m
        for m in live:
            if m.path == path:
                return m
        if not hasattr(self, "_live_index"):
            self._live_index = (live, [_Fp(m.content) for m in live])
            self._lsh = MinHashLSH(threshold=self.policy.lsh_threshold, num_perm=self.policy.lsh_num_perm)
            for i, mh in enumerate(_minhashes(self._live_index[1], self.policy)):
                self._lsh.insert(i, mh)
        mems, fps = self._live_index
        fp = _Fp(content)
        for i in sorted(self._lsh.query(_minhashes([fp], self.policy)[0])):
            m = mems[i]
            if m.memory_id in self.removed or (key and m.key and m.key != key):
                continue
            if near_duplicate(fp, fps[i], self.policy) is not None:
                return m
        return None

    def _propose(self, *, kind: str, key: str | None, path: str, content: str, evidence: list[Source], support: int,
                 confidence: float, taint: str, reason: str, existing: Memory | None = None) -> None:
        if not self._focused(content, key or "", path):
            self.notes.append(f"{path}: outside the focus terms; not proposed")
            return
        bad = safety.dangerous(content)
        if bad:
            self.notes.append(f"{path}: the mined text reads as {', '.join(sorted(bad))} (docs/curation.md, "
                              f"Poisoning); not proposed")
            return
        secrets = safety.secret_kinds(content)
        if secrets:  # a memory never carries a secret; one built around a secret is better not written
            self.notes.append(f"{path}: the mined text holds a secret ({', '.join(secrets)}); not proposed")
            return
        existing = existing or self._existing(key, path, content)
        evidence = _cap(evidence, self.policy.max_evidence)
        if existing is None:
            path = self._free_path(path, key or content)
            self.changes.append(Change(
                op="add", memory_id=ids.stable_id(ids.MEMORY, self.inp.store.get("id", ""), key or path),
                path=path, kind=kind, key=key, after=content, reason=reason,
                evidence=evidence, support=support, confidence=confidence, taint=taint,
            ))
            return
        self.touched.add(existing.memory_id)
        known = {(s.session_id, s.event_id) for s in existing.sources}
        new = [s for s in evidence if (s.session_id, s.event_id) not in known]
        ours = existing.path == path or (key is not None and existing.key == key)
        after = content if ours and content != existing.content else None
        if not new and after is None:
            self.changes.append(Change(op="keep", memory_id=existing.memory_id, path=existing.path,
                                       reason=f"already in the store: {reason}", confidence=existing.confidence))
            return
        self.changes.append(Change(
            op="update", memory_id=existing.memory_id, path=existing.path, kind=existing.kind,
            key=existing.key or key, before=existing.content, after=after,
            reason=f"seen again, new supporting sessions added: {reason}", evidence=new or evidence,
            support=max(support, existing.support), confidence=max(confidence, existing.confidence), taint=taint,
        ))

    # -- mining: mistakes --
    def mine_mistakes(self) -> None:
        by_sig: dict[str, list[dict]] = defaultdict(list)
        injected: set[str] = set()
        unsafe_fix: set[str] = set()
        for e in self.inp.signals.errors:
            if e.get("session_id") not in self.input_sessions or not e.get("signature"):
                continue
            if self._ignored(e["signature"], e.get("failed_command") or "", e.get("workaround_command") or ""):
                continue
            if e.get("injection"):
                injected.add(e["session_id"])
                continue
            by_sig[e["signature"]].append(e)

        def enough(rows: list[dict]) -> bool:
            return len({r["session_id"] for r in rows}) >= self.policy.min_sessions

        # dreaming.safety reads only the errors that could become a memory (their signature recurs): an
        # error whose text, or the call that failed, is an injection or a fetch-and-run / destructive
        # command is not mined; such a workaround is not stated as a fix
        for sig in [s for s in by_sig if enough(by_sig[s])]:
            rows = []
            for e in by_sig[sig]:
                if safety.dangerous(e.get("text")) or safety.dangerous(e.get("failed_command")):
                    injected.add(e["session_id"])
                    continue
                if e.get("workaround_event_id") and (safety.dangerous(e.get("workaround_command"))
                                                     or safety.dangerous(e.get("workaround_input"))):
                    unsafe_fix.add(e["session_id"])
                    e = {**e, **dict.fromkeys(_WORKAROUND_FIELDS)}
                rows.append(e)
            by_sig[sig] = rows
        if injected:
            self.notes.append(f"errors whose text carries instructions aimed at the assistant (prompt injection), or a "
                              f"command that fetches and runs code or destroys data, were not mined "
                              f"({len(injected)} sessions)")
        if unsafe_fix:
            self.notes.append(f"workarounds that fetch and run code or destroy data were not stated as fixes "
                              f"({len(unsafe_fix)} sessions)")
        found = []
        for sig in sorted(by_sig):
            rows = sorted(by_sig[sig], key=lambda r: (r["ts"], r["session_id"], r["event_id"]))
            sessions = sorted({r["session_id"] for r in rows})
            if len(sessions) < self.policy.min_sessions:
                continue
            found.append((-len(sessions), sig, rows, sessions))
        for _, sig, rows, sessions in sorted(found)[: self.policy.max_mistakes]:
            self._mistake(sig, rows, sessions)

    def _mistake(self, sig: str, rows: list[dict], sessions: list[str]) -> None:
        wk_sessions: dict[tuple, set[str]] = defaultdict(set)
        fail_sessions: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            fail_sessions[_short_command(r.get("failed_command"), r.get("failed_tool"))].add(r["session_id"])
            if r.get("workaround_event_id"):
                wk = (r.get("workaround_tool"), _short_command(r.get("workaround_command"), r.get("workaround_tool")))
                wk_sessions[wk].add(r["session_id"])
        failed = sorted(fail_sessions.items(), key=lambda kv: (-len(kv[1]), kv[0]))[0][0]
        # the masked error line as the tools wrote it (case kept), the most frequent spelling
        msgs = Counter(r.get("message") for r in rows if r.get("message"))
        msg = sorted(msgs.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if msgs else sig.split(" | ", 1)[-1]
        n = len(sessions)
        best = sorted(wk_sessions.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
        tool_failed = any(r.get("failed_tool") for r in rows)  # else a harness message, no call failed
        ev = []
        firsts = {}
        for r in rows:
            firsts.setdefault(r["session_id"], r)
        ev += _sources(list(firsts.values()))
        if best and len(best[0][1]) >= self.policy.min_sessions:
            (wk_tool, wk_cmd), wk_s = best[0]
            fix = (_retry_text(wk_cmd, [r for r in firsts.values() if r["session_id"] in wk_s]) if wk_cmd == failed
                   else f"use `{_clean(wk_cmd, 80)}` instead")
            when = (f"When `{_clean(failed, 80)}` fails with '{_clean(msg)}'" if tool_failed
                    else f"When the environment answers '{_clean(msg)}'")
            content = f"{when}, {fix} (seen in {n} sessions; that workaround followed and succeeded in {len(wk_s)})."
            ev += _sources([r for r in firsts.values() if r["session_id"] in wk_s], eid="workaround_event_id",
                           ts="workaround_ts")
            conf = _confidence(n)
        else:
            what = (f"`{_clean(failed, 80)}` fails with" if tool_failed else "The environment answers")
            content = f"{what} '{_clean(msg)}' (seen in {n} sessions); no workaround recurred yet."
            conf = _confidence(n, 0.8)
        taint = _worst(*(r.get("taint") for r in rows))
        if any(r["session_id"] in self.fetched_at and r.get("workaround_ts") is not None
               and r["workaround_ts"] >= self.fetched_at[r["session_id"]] for r in rows):
            taint = _worst(taint, "untrusted")  # the agent read external content before this workaround
        key = "mistake:" + ids.sha256_text(sig)[:16]
        self._propose(kind="mistake", key=key, path=f"/mistakes/{_slug((failed + ' ' if tool_failed else '') + _PLACEHOLDER.sub(' ', msg))}.md",
                      content=content,
                      evidence=ev, support=n, confidence=conf, taint=taint,
                      reason=f"error signature {sig!r} recurs in {n} sessions")

    # -- mining: workflows --
    @staticmethod
    def _runs(s: dict) -> tuple[list[list[str]], list[list[int]], list[bool]]:
        """A session's runs of successful calls: a failed call ends a run (what recovered from it is the
        mistake family's business, and steps on either side of it never ran back to back); repeats of one
        tool inside a run are collapsed. Returns the runs, each step's index in ``tool_events``, and
        whether each run is a recovery (it starts right after a failed call)."""
        tools, events = s.get("tools") or [], s.get("tool_events") or []
        runs: list[list[str]] = [[]]
        starts: list[list[int]] = [[]]
        recovery = [False]
        for i, t in enumerate(tools):
            if t is None:
                continue
            if i < len(events) and events[i].get("failed"):
                if runs[-1]:
                    runs.append([])
                    starts.append([])
                    recovery.append(True)
                recovery[-1] = True
                continue
            if not runs[-1] or runs[-1][-1] != t:
                runs[-1].append(t)
                starts[-1].append(i)
        keep = [k for k, r in enumerate(runs) if r]
        return [runs[k] for k in keep], [starts[k] for k in keep], [recovery[k] for k in keep]

    def _grams(self, runs: list[list[str]], recovery: list[bool]):
        """Distinct n-grams of the runs. None starts at the first call of a recovery run: that call is the
        workaround of the failure before it (the mistake memory says "use Y instead"), and a "workflow"
        that opens with it is that recovery with whatever came next glued on."""
        p = self.policy
        seen: set[tuple] = set()
        for ri, run in enumerate(runs):
            for n in range(p.min_workflow_length, p.max_workflow_length + 1):
                for i in range(1 if recovery[ri] else 0, len(run) - n + 1):
                    g = tuple(run[i: i + n])
                    if g in seen or len(set(g)) < 2:
                        continue
                    seen.add(g)
                    yield g, ri, i

    def mine_workflows(self) -> None:
        """Converged workflows (docs/curation.md, step 5): n-grams of successful runs that recur in
        ``min_sessions`` successful sessions, are *cohesive* (each step directly follows the previous one
        in most successful sessions that use both, by a Wilson lower bound), are not as common in failed
        sessions, and are not a minor variant of another kept workflow (one of each nested or shifted
        pair survives)."""
        p = self.policy
        gram_sessions: dict[tuple, set[str]] = defaultdict(set)
        first_ev: dict[tuple, dict[str, dict]] = defaultdict(dict)
        agents: dict[tuple, set[str]] = defaultdict(set)
        tool_sessions: dict[str, set[str]] = defaultdict(set)  # successful sessions using a tool (ok calls)
        pair_sessions: dict[tuple, set[str]] = defaultdict(set)  # successful sessions where b directly follows a
        failed_runs: list[tuple[list[list[str]], list[bool]]] = []
        for s in self.inp.signals.tool_sequences:
            if s["session_id"] not in self.input_sessions or s.get("success") is None:
                continue
            runs, starts, recovery = self._runs(s)
            if not s.get("success"):
                failed_runs.append((runs, recovery))
                continue
            events = s.get("tool_events") or []
            for run in runs:
                for t in run:
                    tool_sessions[t].add(s["session_id"])
                for a, b in zip(run, run[1:], strict=False):
                    pair_sessions[(a, b)].add(s["session_id"])
            for g, ri, i in self._grams(runs, recovery):
                if any(self._ignored(t) for t in g):
                    continue
                gram_sessions[g].add(s["session_id"])
                agents[g].add(s.get("agent_id") or "")
                k = starts[ri][i]
                ev = events[k] if k < len(events) else {}
                first_ev[g][s["session_id"]] = {"session_id": s["session_id"], **ev}
        frequent = {g: ss for g, ss in gram_sessions.items() if len(ss) >= p.min_sessions}
        # distinctive: cohesive, and not as common among failed sessions
        failed_support: Counter = Counter()
        for runs, recovery in failed_runs:
            for g, _, _ in self._grams(runs, recovery):
                if g in frequent:
                    failed_support[g] += 1
        cohesion_of: dict[tuple, float] = {}

        def cohesion(a: str, b: str) -> float:
            """Of the successful sessions that use both a and b, the share where b directly follows a, as
            the Wilson lower bound (z = 1): two or three sessions that happen to put filler steps side by
            side are not evidence of a converged order (2 of 2 -> 0.67, 3 of 3 -> 0.75, 2 of 3 -> 0.39)."""
            if (a, b) not in cohesion_of:
                cohesion_of[(a, b)] = _wilson_lower(len(pair_sessions[(a, b)]),
                                                    len(tool_sessions[a] & tool_sessions[b]))
            return cohesion_of[(a, b)]

        cands = []
        for g, ss in frequent.items():
            if min(cohesion(a, b) for a, b in zip(g, g[1:], strict=False)) < p.workflow_min_cohesion:
                continue  # a step that is only sometimes next: generic filler glued to the sequence
            if failed_support[g] >= len(ss):
                self.notes.append(f"workflow {' > '.join(g)}: as common in failed sessions "
                                  f"({failed_support[g]}) as in successful ones ({len(ss)}); not proposed")
                continue
            cands.append((g, ss))
        # nested pairs: when one candidate contains another, only one survives. The longer one when it
        # keeps at least ``workflow_subsume_ratio`` of the shorter one's sessions (it is the whole
        # workflow), else the shorter one (the longer is a minor variant with an extra step). A candidate
        # that is a kept workflow shifted by one step (the same steps but one, "B C D E" next to "A B C D")
        # is a variant too and loses to the better supported one.
        cands.sort(key=lambda kv: (-len(kv[1]), -len(kv[0]), kv[0]))
        kept: list[tuple] = []
        for g, ss in cands:
            replaces, lose = [], False
            for k, (kg, kss) in enumerate(kept):
                if _contains(g, kg) and len(ss) >= p.workflow_subsume_ratio * len(kss):
                    replaces.append(k)  # the kept shorter one is part of this longer workflow
                elif _contains(g, kg) or _contains(kg, g) or _shifted(g, kg):
                    lose = True  # a minor variant of a kept workflow (extra or shifted step), or a part of it
                    break
            if not lose:
                kept = [kv for k, kv in enumerate(kept) if k not in replaces] + [(g, ss)]
        kept.sort(key=lambda kv: (-len(kv[1]), -len(kv[0]), kv[0]))
        for g, ss in kept[: p.max_workflows]:
            n = len(ss)
            ag = sorted(a for a in agents[g] if a)
            steps = " → ".join(f"`{_clean(t, 60)}`" for t in g)
            content = (f"Workflow that worked in {n} successful sessions"
                       f"{' (agents: ' + ', '.join(ag) + ')' if ag else ''}: {steps}.")
            key = "workflow:" + ids.sha256_text("\x1f".join(t.lower() for t in g))[:16]
            # an agent that read external content (a page, a download) and then acted: the steps may be
            # the page's instructions, not the agent's own judgement
            fetched = any(safety.fetches_external(t) for t in g) or any(
                sid in self.fetched_at and first_ev[g][sid].get("ts") is not None
                and first_ev[g][sid]["ts"] >= self.fetched_at[sid] for sid in ss)
            self._propose(kind="workflow", key=key, path=f"/workflows/{_slug(' '.join(g))}.md", content=content,
                          evidence=_sources([first_ev[g][sid] for sid in sorted(ss)]), support=n,
                          confidence=_confidence(n), taint="untrusted" if fetched else "trusted",
                          reason=f"tool sequence {' > '.join(g)} shared by {n} successful sessions")

    # -- mining: preferences --
    def mine_preferences(self) -> None:
        prefs = [p for p in self.inp.signals.preferences
                 if p.get("session_id") in self.input_sessions and not self._ignored(p.get("text") or "")]
        poisoned = safety.poisoned_sessions(self.inp.signals.user_messages, {p["session_id"] for p in prefs})
        injected = {p["session_id"] for p in prefs if p.get("injection") or p["session_id"] in poisoned
                    or safety.dangerous(p.get("text"))}
        if injected:
            flags = sorted({f for sid in injected for f in poisoned.get(sid, ())} or {safety.INJECTION})
            self.notes.append(f"user messages that carry instructions aimed at the assistant (prompt injection), or "
                              f"commands that fetch and run code or destroy data ({', '.join(flags)}), were not mined "
                              f"as preferences: nothing from those sessions' user messages ({len(injected)} sessions)")
        prefs = _fold_same_message([p for p in prefs if p["session_id"] not in injected])
        prefs.sort(key=lambda p: (p["ts"], p["session_id"], p["event_id"], p["text"]))
        keyed: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        free: list[dict] = []
        for p in prefs:
            if p.get("key") and p.get("value"):
                keyed[p["key"]][p["value"]].append(p)
            else:
                free.append(p)
        found = []
        for key in sorted(keyed):
            # among values repeated across sessions, the latest by event time wins
            qual = [(max(r["ts"] for r in rows), value, rows) for value, rows in keyed[key].items()
                    if len({r["session_id"] for r in rows}) >= self.policy.min_sessions]
            if not qual:
                continue
            last, value, rows = sorted(qual, key=lambda q: (q[0], q[1]))[-1]
            for _, other, _ in qual:
                if other != value:
                    self.notes.append(f"{key}: '{other}' was also repeated but '{value}' is stated later; kept '{value}'")
            found.append((key, value, rows))
        by_norm: dict[str, list[dict]] = defaultdict(list)
        for p in free:
            by_norm[p["normalized"]].append(p)
        texts = sorted(by_norm)
        clustered: set[int] = set()
        for idx, _ in cluster_duplicates(texts, self.policy) if len(texts) > 1 else []:
            clustered.update(idx)
            found.append((None, None, [r for i in idx for r in by_norm[texts[i]]]))
        found += [(None, None, by_norm[t]) for i, t in enumerate(texts) if i not in clustered]
        found = [f for f in found if len({r["session_id"] for r in f[2]}) >= self.policy.min_sessions]
        found.sort(key=lambda f: (-len({r["session_id"] for r in f[2]}), f[0] or "", f[2][0]["normalized"]))
        for key, value, rows in found[: self.policy.max_preferences]:
            self._preference(key, value, rows)

    def _preference(self, key: str | None, value: str | None, rows: list[dict]) -> None:
        n = len({r["session_id"] for r in rows})
        counts = Counter(r["text"] for r in rows)
        text = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        slot = key.split(":", 1)[1] if key else None
        content = (f"User preference{f' ({slot})' if slot else ''}: {_clean(text, 240)} (stated in {n} sessions).")
        last = max(r["ts"] for r in rows)
        firsts: dict[str, dict] = {}
        for r in rows:
            firsts.setdefault(r["session_id"], r)
        evidence = _sources(list(firsts.values()))
        path = f"/preferences/{_slug(slot + ' ' + value if slot else text)}.md"
        reason = f"preference repeated by users in {n} sessions (last {last.isoformat()})"
        current = self._slot_holder(key) if key else None
        if current is not None:
            cur_value = slot_of(norm_text(current.content)).get("value")
            if (cur_value is not None and cur_value != value) or (
                    cur_value is None and value not in norm_text(current.content)):
                self._contradict(current, key, value, content, evidence, n, last, reason)
                return
        self._propose(kind="preference", key=key, path=path, content=content, evidence=evidence, support=n,
                      confidence=_confidence(n), taint="user", reason=reason, existing=current)

    def _slot_holder(self, key: str) -> Memory | None:
        """The live base memory holding slot ``key``: by key, else a keyless preference about that slot."""
        live = self.live()
        holders = [m for m in live if m.key == key]
        if not holders:  # a keyless memory holds the slot only when it states a value of it
            holders = [m for m in live if m.kind == "preference" and not m.key
                       and (lambda sl: sl.get("key") == key and sl.get("value"))(slot_of(norm_text(m.content)))]
        return sorted(holders, key=_order_time)[-1] if holders else None

    def _contradict(self, current: Memory, key: str, value: str, content: str, evidence: list[Source], n: int,
                    last: datetime, reason: str) -> None:
        t = event_time(current)
        if t is not None and t >= last:
            self.notes.append(f"{key}: sessions say '{value}' but {current.path} is newer ({t.isoformat()}); kept")
            return
        if current.pinned:
            self.notes.append(f"{key}: sessions say '{value}' but {current.path} is pinned; kept")
            return
        self.touched.add(current.memory_id)
        self.changes.append(Change(
            op="supersede", memory_id=current.memory_id, path=current.path, kind="preference", key=key,
            before=current.content, after=content,
            reason=(f"contradicted on {key}: {reason}, newer than the stored value "
                    f"({t.isoformat() if t else 'no event time'}); latest value by event time wins"),
            evidence=_cap(evidence, self.policy.max_evidence), support=n, confidence=_confidence(n), taint="user",
        ))
