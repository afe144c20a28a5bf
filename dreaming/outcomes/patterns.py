"""What a memory is about, as pattern keys a session can show: the one matcher `outcomes` and `backtest` share.

A *pattern key* is a tuple. A session shows a set of them (``session_patterns``); a memory addresses a set
(``memory_patterns``); the memory *matches* a session when the two sets meet. The keys reuse the miners'
own grouping, so a pattern is recognised exactly as the dream that wrote the memory recognised it:

- ``("error", tool, cause)``: a ``tool_error`` row grouped as the mistakes miner groups errors
  (``miners.mistakes._tool_key`` and ``_cause``: the tool, a script by its interpreter, and the error line up
  to its detail). A mistake memory's pattern is the group of the error events its ``sources`` cite.
- ``("stmt", text)``: a statement by a person (a preference sentence, or a sentence of the words that
  followed a rejected call), normalised by ``similarity.norm_text`` as the corrections miner does; a
  preference's or a rule's pattern is the statements its sources cite.
- ``("key", key)``: a memory key a session's signals rebuild: the slot of a preference statement
  (``signals.slots``), ``rule:<hash>`` of a normalised statement (the corrections miner's key) and
  ``workflow:<hash>`` of a tool-call n-gram of a run of successful calls (the workflows miner's key).

Nothing here reads the lake: it post-processes a ``Signals`` (``dreaming.signals.extract_signals``).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from types import SimpleNamespace

from dreaming import ids
from dreaming.curators.rules.miners import workflows
from dreaming.curators.rules.miners.corrections import _sentences
from dreaming.curators.rules.miners.mistakes import _cause, _tool_key
from dreaming.curators.rules.similarity import norm_text
from dreaming.models import Memory
from dreaming.policy import Policy
from dreaming.signals import Signals, failures

#: the way a pattern's rate should move once its memory is loaded: a mistake or a correction should recur
#: less ("down"); a workflow should be followed more ("up")
DIRECTION = {"workflow": "up"}


def direction(kind: str) -> str:
    return DIRECTION.get(kind, "down")


def error_key(e: dict) -> tuple | None:
    """The mistakes miner's group of one error row, or None for a row that is not a tool error."""
    if e.get("failure_class") != failures.TOOL_ERROR or not e.get("failed_tool"):
        return None
    return ("error", _tool_key(e)[0], _cause(e.get("message") or ""))


@functools.lru_cache(maxsize=65536)
def _statement_keys_of(text: str) -> frozenset:
    norm = norm_text(text)
    if not norm:
        return frozenset()
    return frozenset({("stmt", norm), ("key", "rule:" + ids.sha256_text(norm)[:16])})


def _statement_keys(text: str) -> set[tuple]:
    return set(_statement_keys_of(text or ""))


def _preference_keys(p: dict) -> set[tuple]:
    keys = _statement_keys(p.get("text") or "")
    if p.get("key"):
        keys.add(("key", p["key"]))
    return keys


def _correction_keys(c: dict) -> set[tuple]:
    out: set[tuple] = set()
    for s in _sentences(c.get("text") or ""):
        out |= _statement_keys(s)
    return out


def workflow_grams(seq: dict, policy: Policy) -> dict[str, str]:
    """The workflows miner's keys of one session's tool sequence, each with its n-gram (lowercased steps
    joined by ``\\x1f``, what the key hashes)."""
    runs, _, recovery = workflows._runs(seq)
    run = SimpleNamespace(policy=policy)
    out = {}
    for g, _, _ in workflows._grams(run, runs, recovery):
        gram = "\x1f".join(t.lower() for t in g)
        out["workflow:" + ids.sha256_text(gram)[:16]] = gram
    return out


def _workflow_keys(seq: dict, policy: Policy) -> set[tuple]:
    return {("key", k) for k in workflow_grams(seq, policy)}


def _is_person(row: dict) -> bool:
    """A statement by the agent's own team (a served user's wish is about their request), outside the task
    text and without a prompt-injection phrase: what the preference and correction miners read."""
    return row.get("voice", "team") == "team" and not row.get("in_task") and not row.get("injection")


class SessionPatterns:
    """Per session: the failures (error keys), the corrections (statement keys, one set per statement) and
    every pattern key it shows. Built once from a ``Signals`` (the dream's, or ``keys.pattern_signals``'s with
    ``workflow_shown``: workflow key -> the sessions that show it, computed in SQL)."""

    def __init__(self, signals: Signals, policy: Policy | None = None,
                 workflow_shown: dict[str, set[str]] | None = None):
        policy = policy or Policy()
        self.failures: dict[str, set[tuple]] = defaultdict(set)
        self.corrections: dict[str, list[set[tuple]]] = defaultdict(list)
        self.keys: dict[str, set[tuple]] = defaultdict(set)
        self.by_event: dict[tuple[str, str], set[tuple]] = {}  # (session, event) -> the keys that event shows
        self.label: dict[tuple, str] = {}  # a readable line per key
        for e in signals.errors:
            k = error_key(e)
            if k is None:
                continue
            self.failures[e["session_id"]].add(k)
            self.keys[e["session_id"]].add(k)
            self.by_event[(e["session_id"], e["event_id"])] = {k}
            self.label.setdefault(k, f"{k[1]}: {k[2]}")
        for p in signals.preferences:
            if not _is_person(p):
                continue
            ks = _preference_keys(p)
            self._statement(p, ks)
        for c in signals.corrections:
            if c.get("voice", "team") != "team" or not c.get("text"):
                continue
            self._statement(c, _correction_keys(c))
        self._sequences, self._policy = signals.tool_sequences, policy  # workflow keys: on first need
        for k, sessions in (workflow_shown or {}).items():
            for sid in sessions:
                self.keys[sid].add(("key", k))

    def _with_workflows(self) -> None:
        """Add every session's workflow keys (n-grams of its runs of successful calls): only when a workflow
        memory is matched, as hashing every n-gram of every session is most of the work otherwise."""
        if self._sequences is None:
            return
        for s in self._sequences:
            self.keys[s["session_id"]] |= _workflow_keys(s, self._policy)
        self._sequences = None
        self._by_key = None

    def _statement(self, row: dict, ks: set[tuple]) -> None:
        if not ks:
            return
        sid = row["session_id"]
        self.corrections[sid].append(ks)
        self.keys[sid] |= ks
        self.by_event.setdefault((sid, row.get("event_id")), set()).update(ks)
        for k in ks:
            if k[0] == "stmt":
                self.label.setdefault(k, f"said: {row.get('text') or k[1]}"[:160])

    def of_memory(self, m: Memory) -> set[tuple]:
        """The pattern keys memory ``m`` addresses (empty: nothing in these sessions says what it is about,
        e.g. a hand-written note)."""
        cited: set[tuple] = set()
        for s in m.sources:
            cited |= self.by_event.get((s.session_id, s.event_id), set())
        if m.kind == "mistake":
            return {k for k in cited if k[0] == "error"}
        if m.kind == "workflow":
            if not (m.key and m.key.startswith("workflow:")):
                return set()
            self._with_workflows()
            return {("key", m.key)}
        said = set(norm_text(m.content).split())
        keys = {k for k in cited if k[0] == "stmt" and _overlap(set(k[1].split()), said) >= 0.5}
        if m.key:
            keys.add(("key", m.key))
        return keys

    def shows(self, session_id: str, pattern: set[tuple]) -> bool:
        return bool(pattern and self.keys.get(session_id, set()) & pattern)

    def showing(self, pattern: set[tuple]) -> set[str]:
        """The sessions that show ``pattern`` (any of its keys)."""
        idx = getattr(self, "_by_key", None)
        if idx is None:
            idx = defaultdict(set)
            for sid, ks in self.keys.items():
                for k in ks:
                    idx[k].add(sid)
            self._by_key = idx
        out: set[str] = set()
        for k in pattern:
            out |= idx.get(k, set())
        return out

    def describe(self, pattern: set[tuple], m: Memory | None = None) -> str:
        for k in sorted(pattern):
            if k in self.label:
                return self.label[k]
        return m.content[:120] if m is not None else ""


def _overlap(a: set[str], b: set[str]) -> float:
    """Jaccard overlap of two token sets: a message with two statements cites both; a memory is one of them."""
    return len(a & b) / len(a | b) if a | b else 0.0


def memory_patterns(sp: SessionPatterns, memories: list[Memory]) -> dict[str, set[tuple]]:
    """memory id -> its pattern keys, for the memories that have any."""
    out = {}
    for m in memories:
        keys = sp.of_memory(m)
        if keys:
            out[m.memory_id] = keys
    return out
