"""The state of one offline curation run, and the one way a mined item becomes a change (``propose``)."""

from __future__ import annotations

from datetime import UTC

from datasketch import MinHashLSH

from dreaming import ids, safety
from dreaming.changeset import finalize
from dreaming.curators.base import CurationInput, CurationResult
from dreaming.curators.rules.common import _cap
from dreaming.curators.rules.instructions import effective_policy
from dreaming.curators.rules.similarity import _Fp, _minhashes, near_duplicate
from dreaming.models import Change, Memory, Source, merge_sources

class Run:
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
        # the store's already-dreamt sessions read beside the input: they count towards a pattern's recurrence,
        # but a pattern is proposed only when an input session shows it (nothing is re-judged on old evidence)
        self.context_sessions = set(inp.context_session_ids) - self.input_sessions
        self.seen_sessions = self.input_sessions | self.context_sessions
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

    def path_for_new_text(self, m: Memory, content: str) -> str:
        """The path of ``m`` once its text is replaced by ``content``: a rule split from an instruction file is
        named after its first line, so it is renamed after the new one (same file and headings; a free name);
        any other path stays."""
        from dreaming.instructions_file import renamed_rule_path

        new = renamed_rule_path(m.path, m.key, m.content, content)
        if new is None or new == m.path:
            return m.path
        return self._free_path(new, m.key or new)

    def result(self) -> CurationResult:
        """The changes so far, sanitised (dreaming.safety) and finalised in a deterministic order."""
        changes, notes = safety.sanitize_changes(self.changes)
        return CurationResult(changes=finalize(changes, self.inp.dream_id), notes=sorted(self.notes + notes))

    def live(self) -> list[Memory]:
        return [m for m in self.base if m.memory_id not in self.removed and m.memory_id not in self.ignored]

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
