"""``ClaudeCurator``: the production curator, through the anthropic SDK (DESIGN §5, issue 6).

``ClaudeCurator().curate(inp) -> CurationResult``. It reads the same DuckDB signals as the rules
curator and sends Claude a compact, evidence-tagged digest of each session (``dreaming.digest``),
never raw transcripts, in two phases:

1. **map** — batches of session digests (``claude_batch_tokens`` each) → candidate findings, through
   the ``record_findings`` tool;
2. **reduce** — one pass over the existing store plus all findings → the changeset, through the
   ``propose_changes`` tool, whose input mirrors ``Change``.

When every digest fits one batch (``claude_single_pass``), one call reads the digests and the store and
proposes the changeset. ``plan_dream(inp, settings)`` builds the requests that go out first (the single
pass, or every map call) before any call is made: the curator sends them, and ``dreams digest`` prints
them — one code path for what Claude reads.

Every evidence id must exist among the dream's inputs: a finding or change citing anything else is
dropped and noted in ``CurationResult.notes``. ``usage`` sums all four token counters of every response;
any exception leaving ``curate`` carries the usage spent so far as ``exc.usage``. The calls themselves
(validation, retries, budget, error mapping) are ``dreaming.curators.claude.client``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreaming import ids
from dreaming.changeset import finalize
from dreaming.curators.base import CurationInput, CurationResult
from dreaming.curators.claude.client import (Run, call_tool, make_client, request_tokens)
from dreaming.curators.claude.prompt import build_system, map_message, reduce_message, single_pass_message
from dreaming.curators.claude.schemas import TOOLS, ChangesetOutput, ChangeSpec, FindingsOutput
from dreaming.digest import EvidenceIndex, SessionDigest, build_batches, evidence_index, worst_taint
from dreaming.errors import DreamFailure
from dreaming.models import Change, Source, merge_sources
from dreaming.safety import dangerous, sanitize_changes
from dreaming.settings import Settings, get_settings

_Run = Run  # the name before the package split


def tool_request(run: Run, user_text: str, tool: str, only: bool = False) -> dict:
    """A Messages API request body that must answer by calling ``tool``.

    The calls of a map-reduce dream all carry both tools, so that they share one cacheable prefix (tools,
    then system); a single-pass dream makes one call and carries ``only`` the tool it must call."""
    return {
        "model": run.model,
        "max_tokens": run.max_output,
        "system": run.system,
        "tools": [t for t in TOOLS if t["name"] == tool] if only else TOOLS,
        "tool_choice": {"type": "tool", "name": tool},
        "messages": [{"role": "user", "content": user_text}],
    }


@dataclass
class Plan:
    """What a dream sends before any answer comes back.

    ``requests`` is the single-pass ``propose_changes`` request, or one ``record_findings`` request per
    batch (the reduce request is built from the findings the map calls return). ``max_tokens`` in each
    is the cap; at call time it is lowered to what the token budget has left.
    """

    run: Run
    index: EvidenceIndex
    batches: list[list[SessionDigest]]
    single_pass: bool
    requests: list[dict]

    @property
    def input_tokens(self) -> int:
        """Estimated input tokens of ``requests`` (characters / 4)."""
        return sum(request_tokens(r) for r in self.requests)


def plan_dream(inp: CurationInput, settings: Settings, model: str | None = None) -> Plan:
    """The first requests of a dream over ``inp``: the one function that decides what Claude reads."""
    model = settings.check_model(inp.model or model or settings.default_model)
    run = Run(model=model, budget=settings.token_budget_per_dream, max_output=settings.claude_max_output_tokens,
              system=build_system(inp.base, inp.instructions))
    idx = evidence_index(inp.signals, inp.session_ids)
    batches = build_batches(inp.signals, inp.session_ids, settings.claude_batch_tokens)
    single = len(batches) == 1 and settings.claude_single_pass
    if single:
        # short input: one call reads the digests and the store and proposes the changeset
        requests = [tool_request(run, single_pass_message(batches[0]), "propose_changes", only=True)]
    else:
        requests = [tool_request(run, map_message(b, i + 1, len(batches)), "record_findings")
                    for i, b in enumerate(batches)]
    return Plan(run=run, index=idx, batches=batches, single_pass=single, requests=requests)


class ClaudeCurator:
    name = "claude"

    def __init__(self, settings: Settings | None = None, client=None, model: str | None = None):
        self.settings = settings or get_settings()
        if model is not None:
            self.settings.check_model(model)
        self.model = model
        self.client = client if client is not None else make_client(self.settings)

    # -- the dream --------------------------------------------------------------------------------

    def curate(self, inp: CurationInput) -> CurationResult:
        plan = plan_dream(inp, self.settings, self.model)
        try:
            return self._curate(inp, plan)
        except BaseException as exc:
            try:
                exc.usage = plan.run.usage  # the tokens spent before the failure, for dream.usage
            except Exception:  # noqa: BLE001
                pass
            raise

    def _curate(self, inp: CurationInput, plan: Plan) -> CurationResult:
        run, idx, batches = plan.run, plan.index, plan.batches
        need = plan.input_tokens
        if need > run.budget:
            raise self._too_big(inp, len(plan.requests), need, run.budget)
        if plan.single_pass:
            out: ChangesetOutput = call_tool(self.client, run, plan.requests[0], "single pass")
            changes = _guard(self._to_changes(out.changes, inp, idx, run.notes), run.notes)
            return CurationResult(changes=finalize(changes, inp.dream_id), usage=run.usage, notes=run.notes)

        # map: candidate findings per batch
        findings: list[dict] = []
        for i, req in enumerate(plan.requests):
            out: FindingsOutput = call_tool(self.client, run, req, f"map batch {i + 1}/{len(batches)}")
            for f in out.findings:
                bad = [e for e in f.evidence if not idx.has(e.session_id, e.event_id)]
                if bad:
                    run.notes.append(
                        f"dropped finding {f.content[:60]!r}: evidence not among the dream's inputs: "
                        + ", ".join(f"{e.session_id}/{e.event_id}" for e in bad)
                    )
                    continue
                d = f.model_dump(mode="json")
                d["support"] = len({e.session_id for e in f.evidence})
                d["taint"] = worst_taint(*(idx.taint_of(e.session_id, e.event_id) for e in f.evidence)) or "trusted"
                findings.append(d)
        for n, f in enumerate(findings, 1):
            f["finding"] = f"F{n}"

        # reduce: the changeset
        changes: list[Change] = []
        if findings or inp.base:
            req = tool_request(run, reduce_message(findings, len(inp.session_ids), len(batches)), "propose_changes")
            out: ChangesetOutput = call_tool(self.client, run, req, "reduce")
            changes = _guard(self._to_changes(out.changes, inp, idx, run.notes), run.notes)
        return CurationResult(changes=finalize(changes, inp.dream_id), usage=run.usage, notes=run.notes)

    @staticmethod
    def _too_big(inp: CurationInput, calls: int, need: int, budget: int) -> DreamFailure:
        return DreamFailure(
            "budget_exceeded",
            f"the digests of {len(inp.session_ids)} sessions alone need about {need} input tokens (estimate: "
            f"characters/4) in {calls} call(s), over the token budget per dream of {budget}; select fewer "
            "sessions or raise DREAMS_TOKEN_BUDGET_PER_DREAM",
        )

    # -- validated tool output → typed changes ----------------------------------------------------

    def _to_changes(self, specs: list[ChangeSpec], inp: CurationInput, idx: EvidenceIndex, notes: list[str]) -> list[Change]:
        base = {m.memory_id: m for m in inp.base}
        touched: set[str] = set()
        paths = {m.path: m.memory_id for m in inp.base}
        removed = {mid for s in specs if s.op == "merge" for mid in s.merged_ids} | {
            s.memory_id for s in specs if s.op == "prune" or (s.op == "supersede" and s.content is None)
        }
        store_id = (inp.store or {}).get("id") or ""
        out: list[Change] = []

        for s in specs:
            label = f"{s.op} {s.memory_id or s.path}"

            def drop(why: str) -> None:
                notes.append(f"dropped change {label}: {why}")

            bad = [e for e in s.evidence if not idx.has(e.session_id, e.event_id)]
            if bad:
                drop("evidence not among the dream's inputs: " + ", ".join(f"{e.session_id}/{e.event_id}" for e in bad))
                continue
            targets = [] if s.op == "add" else [s.memory_id, *s.merged_ids]
            unknown = [t for t in targets if t not in base]
            if unknown:
                drop("unknown memory id " + ", ".join(unknown))
                continue
            if s.op == "merge" and s.memory_id in s.merged_ids:
                drop("merge target is also in merged_ids")
                continue
            if s.op != "keep" and touched & set(targets):
                drop("another change already targets " + ", ".join(sorted(touched & set(targets))))
                continue
            target = base.get(s.memory_id) if s.memory_id else None
            if target is not None and target.pinned and (s.op == "prune" or (s.op == "supersede" and s.content is None)):
                drop("the memory is pinned (never removed automatically)")
                continue
            if s.op == "keep":
                out.append(Change(op="keep", memory_id=s.memory_id, path=target.path, reason=s.reason,
                                  confidence=s.confidence))
                continue
            new_path = s.path if s.op in ("add", "update", "merge", "supersede") else None
            if new_path and (target is None or new_path != target.path):
                holder = paths.get(new_path)
                if holder is not None and holder not in removed:
                    drop(f"path {new_path} is already used by {holder}")
                    continue
            evidence = merge_sources(
                [Source(session_id=e.session_id, event_id=idx.resolve(e.session_id, e.event_id),
                        ts=idx.ts(e.session_id, e.event_id))
                 for e in s.evidence]
            )
            taint = worst_taint(*(idx.taint_of(e.session_id, e.event_id) for e in s.evidence)) or "trusted"
            common = dict(
                op=s.op, key=s.key, kind=s.kind, reason=s.reason, evidence=evidence, confidence=s.confidence,
                support=len({e.session_id for e in evidence}), taint=taint,
            )
            if s.op == "add":
                mid = ids.stable_id(ids.MEMORY, store_id, new_path)
                out.append(Change(memory_id=mid, path=new_path, after=s.content,
                                  **{**common, "kind": s.kind or "insight"}))
                paths[new_path] = mid
            else:
                if new_path:
                    paths[new_path] = target.memory_id
                out.append(Change(memory_id=target.memory_id, merged_ids=sorted(s.merged_ids), path=new_path or target.path,
                                  before=target.content, after=s.content if s.op != "prune" else None, **common))
            touched.update(t for t in targets if t)
        return out


def _guard(changes: list[Change], notes: list[str]) -> list[Change]:
    """What the model proposed, as a dream may write it: a change whose new content reads as an injection,
    or fetches and runs code, or destroys data (``dreaming.safety.dangerous``) is dropped with a note; the
    rest is cleaned (secrets redacted, invisible characters removed; ``sanitize_changes`` notes what)."""
    kept = []
    for c in changes:
        bad = dangerous(c.after) if c.after else frozenset()
        if bad:
            notes.append(f"dropped {c.op} of {c.path or c.memory_id}: its content reads as {', '.join(sorted(bad))} "
                         f"(docs/curation.md, Poisoning)")
            continue
        kept.append(c)
    kept, cleaned = sanitize_changes(kept)
    notes.extend(cleaned)
    return kept
