"""The promotion gate: Great Expectations suites over a candidate store version and its changeset.

The suites live as JSON in ``expectations/`` (``candidate_store.json``, ``changeset.json``) and are
loaded into an ephemeral GX context with progress bars off. GX is imported lazily, inside the
functions that need it: the import costs ~8-10 s, and nothing else in the core package pays it.

Rules the built-in expectations cannot express row by row (content encodes as UTF-8, evidence on
every change but ``keep``, evidence from the dream's input sessions, tainted content new in this
version, new content that tells an agent to act or holds a secret (``dreaming.safety``,
``dreaming.redaction``), the share of base memories removed) are computed here as derived columns
(``store_frame`` / ``changeset_frame``) and checked by built-in expectations on those columns.

Modes: ``auto`` (gate pass → promote without a person) fails on every failed expectation;
``review`` (a person approves) reports the expectations marked ``relaxed_in_review`` in the suite
(tainted content, share removed) as warnings that do not block: those are exactly the things a
person must look at.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dreaming.atomic import write_text_atomic
from dreaming.errors import DreamsError, InvalidState
from dreaming.models import Change, Memory, iso, utcnow
from dreaming.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from dreaming.catalog import Catalog

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SUITES = ("candidate_store", "changeset")
GateMode = Literal["auto", "review"]
TAINTED = ("tool_output", "untrusted")
WRITE_OPS = ("add", "update", "merge", "supersede")
MAX_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 120


@dataclass
class ExpectationResult:
    """One expectation's outcome: which rule, on which suite, how many rows broke it, examples."""

    suite: str
    name: str
    expectation: str
    column: str | None
    success: bool
    blocking: bool = True
    unexpected_count: int | None = None
    observed_value: Any = None
    examples: list[dict] = field(default_factory=list)
    description: str = ""
    error: str | None = None
    relaxed_in_review: bool = False  # a person may waive it (the suite's meta says so)


@dataclass
class GateResult:
    success: bool
    mode: str
    results: list[ExpectationResult]
    statistics: dict = field(default_factory=dict)
    checked_at: str | None = None
    store_id: str | None = None
    version: int | None = None
    data_docs: str | None = None
    needs_review: bool = False  # failed in auto mode only on rules a person may waive: escalate

    @property
    def failures(self) -> list[ExpectationResult]:
        """Failed expectations that block promotion in this mode."""
        return [r for r in self.results if not r.success and r.blocking]

    @property
    def warnings(self) -> list[ExpectationResult]:
        """Failed expectations that a person reviewing the dream must see but that do not block."""
        return [r for r in self.results if not r.success and not r.blocking]

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> "GateResult":
        d = dict(d)
        d["results"] = [ExpectationResult(**r) for r in d.get("results", [])]
        return cls(**d)

    @staticmethod
    def _brief(r: "ExpectationResult") -> str:
        """``suite.name`` and how much failed: rows, or for the store-level share the share itself."""
        share = next((e["removed_share"] for e in r.examples if isinstance(e, Mapping) and "removed_share" in e),
                     None)
        if share is not None:
            return f"{r.suite}.{r.name} ({share:.0%} of the base store)"
        return f"{r.suite}.{r.name}" + (f" ({r.unexpected_count} rows)" if r.unexpected_count else "")

    def as_review(self) -> "GateResult":
        """The same validation judged in review mode: what a person may waive no longer blocks."""
        results = [replace(r, blocking=not r.relaxed_in_review) for r in self.results]
        return replace(self, mode="review", results=results,
                       success=not any(not r.success and r.blocking for r in results))

    def summary(self) -> str:
        if self.needs_review:
            return "needs a person: " + ", ".join(self._brief(r) for r in self.warnings)
        if self.success and not self.warnings:
            return f"gate passed ({len(self.results)} expectations, mode {self.mode})"
        parts = [self._brief(r) for r in self.failures]
        head = "gate passed" if self.success else "gate failed: " + ", ".join(parts)
        if self.warnings:
            head += "; needs review: " + ", ".join(f"{r.suite}.{r.name}" for r in self.warnings)
        return head

    def to_markdown(self) -> str:
        lines = [f"## Gate {'passed' if self.success else 'FAILED'} (mode `{self.mode}`)", ""]
        if self.store_id:
            lines += [f"Store `{self.store_id}` candidate v{self.version}", ""]
        lines += ["| suite | expectation | result | unexpected | examples |", "|---|---|---|---|---|"]
        for r in self.results:
            status = "pass" if r.success else ("FAIL" if r.blocking else "warn")
            ex = "; ".join(json.dumps(e, ensure_ascii=False)[:MAX_EXAMPLE_CHARS] for e in r.examples[:3])
            if r.error:
                ex = f"error: {r.error}"
            elif not ex and r.observed_value is not None and not r.success:
                ex = f"observed {r.observed_value}"
            ex = ex.replace("|", "\\|")
            lines.append(f"| {r.suite} | {r.name} | {status} | {r.unexpected_count or ''} | {ex} |")
        return "\n".join(lines) + "\n"

    def table_rows(self) -> list[dict]:
        return [
            {"suite": r.suite, "expectation": r.name, "success": r.success, "blocking": r.blocking,
             "unexpected_count": r.unexpected_count, "observed_value": r.observed_value,
             "examples": json.dumps(r.examples[:3], ensure_ascii=False)[:300]}
            for r in self.results
        ]


class GateFailed(DreamsError):
    """Raised by callers that treat a failed gate as an error; carries the ``GateResult``."""

    exit_code = 1

    def __init__(self, result: GateResult, message: str | None = None):
        self.result = result
        super().__init__(message or result.summary())


# --- derived frames -------------------------------------------------------------------------------


def _row(obj: Memory | Change | Mapping) -> dict:
    if isinstance(obj, Mapping):
        return dict(obj)
    return obj.model_dump()


def _utf8_bytes(s: Any) -> int | None:
    if not isinstance(s, str):
        return None
    return len(s.encode("utf-8", errors="surrogatepass"))


def _safe(s: Any) -> Any:
    """Strings that do not encode as UTF-8 (lone surrogates) shown escaped: pandas/Arrow and GX
    cannot hold them; ``*_utf8_ok`` columns carry the verdict."""
    if isinstance(s, str) and not _utf8_ok(s):
        return s.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return s


def _utf8_ok(s: Any) -> bool | None:
    if s is None:
        return None
    try:
        s.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        return False
    return True


def _actionable(text: Any) -> bool:
    """Content that would make an agent run a command, contact a URL or handle credentials, or that
    reads as an injection (``dreaming.safety``): a person must see it before it becomes memory."""
    from dreaming.safety import needs_person

    return isinstance(text, str) and bool(needs_person(_safe(text)))


def _has_secret(text: Any) -> bool:
    from dreaming.redaction import has_secret

    return isinstance(text, str) and has_secret(_safe(text))


def store_frame(candidate: Sequence[Memory | Mapping], base: Sequence[Memory | Mapping]) -> "pd.DataFrame":
    """The candidate version as a DataFrame, with the derived columns the store suite checks."""
    base_sha = {}
    for b in base:
        r = _row(b)
        base_sha[r.get("memory_id")] = r.get("content_sha256")
    rows = []
    for m in candidate:
        r = _row(m)
        content = r.get("content")
        path = r.get("path")
        sha = r.get("content_sha256")
        is_new = r.get("memory_id") not in base_sha or base_sha[r.get("memory_id")] != sha
        rows.append(
            {
                "memory_id": r.get("memory_id"),
                "path": _safe(path),
                "path_bytes": _utf8_bytes(path),
                "content": _safe(content),
                "content_bytes": _utf8_bytes(content),
                "content_utf8_ok": _utf8_ok(content),
                "kind": r.get("kind"),
                "taint": r.get("taint"),
                "confidence": r.get("confidence"),
                "tainted_new": bool(r.get("taint") in TAINTED and is_new),
                "actionable_new": bool(is_new and _actionable(content)),
                "secret_new": bool(is_new and (_has_secret(content) or _has_secret(path))),
            }
        )
    cols = ["memory_id", "path", "path_bytes", "content", "content_bytes", "content_utf8_ok", "kind", "taint",
            "confidence", "tainted_new", "actionable_new", "secret_new"]
    return _frame(rows, cols, numeric=("path_bytes", "content_bytes", "confidence"))


def _field(obj, name: str):
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def changeset_frame(
    changes: Sequence[Change | Mapping], base: Sequence[Memory | Mapping], input_session_ids: Sequence[str]
) -> "pd.DataFrame":
    """The changeset as a DataFrame, with the derived columns the changeset suite checks."""
    inputs = set(input_session_ids)
    # Evidence may point at the dream's input sessions (with its context sessions: the store's already-dreamt
    # sessions it read to corroborate; ``Dream.evidence_session_ids``), at sources the base store already records
    # (a merge of two old memories cites their own provenance), or at a base memory itself
    # (`store:<store_id>` + its memory id, for hand-written memories without sources).
    base_rows = [_row(m) for m in base]
    recorded = {_field(s, "session_id") for m in base_rows for s in (m.get("sources") or [])}
    base_ids = {m.get("memory_id") for m in base_rows}

    def cited_ok(e) -> bool:
        sid = _field(e, "session_id")
        if sid in inputs or sid in recorded:
            return True
        return bool(sid) and sid.startswith("store:") and _field(e, "event_id") in base_ids

    rows = []
    for c in changes:
        r = _row(c)
        evidence = r.get("evidence") or []
        op = r.get("op")
        decision = r.get("decision")
        writes = op in WRITE_OPS and not (op == "supersede" and r.get("after") is None)
        rows.append(
            {
                "change_id": r.get("change_id"),
                "op": op,
                "decision": decision,
                "kind": r.get("kind"),
                "taint": r.get("taint"),
                "confidence": r.get("confidence"),
                "evidence_count": len(evidence),
                "evidence_ok": bool(op == "keep" or len(evidence) > 0),
                "evidence_in_inputs": all(cited_ok(e) for e in evidence),
                "taint_needs_review": bool(writes and decision != "rejected" and r.get("taint") in TAINTED),
                "actionable_change": bool(writes and decision != "rejected" and _actionable(r.get("after"))),
                "secret_change": any(_has_secret(r.get(f)) for f in ("path", "before", "after", "reason")),
            }
        )
    share = _removed_share(changes, base)
    cols = ["change_id", "op", "decision", "kind", "taint", "confidence", "evidence_count", "evidence_ok", "evidence_in_inputs",
            "taint_needs_review", "actionable_change", "secret_change"]
    df = _frame(rows, cols, numeric=("confidence", "evidence_count"))
    df["removed_share"] = float(share)
    return df


def _frame(rows: list[dict], cols: list[str], numeric: tuple[str, ...]) -> "pd.DataFrame":
    """Object columns (pandas 3 would infer Arrow strings, which refuse invalid UTF-8 before the
    gate could report it), numeric columns as float."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=cols, dtype=object)
    for c in numeric:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def _removed_share(changes: Sequence[Change | Mapping], base: Sequence[Memory | Mapping]) -> float:
    """``changeset.removed_share``; rows that are not valid Changes (unknown op...) are left to the
    vocabulary expectations, which fail the gate on them anyway."""
    from types import SimpleNamespace

    from dreaming.changeset import removed_share

    models = []
    for c in changes:
        if isinstance(c, Change):
            models.append(c)
            continue
        try:
            models.append(Change.model_validate(dict(c)))
        except ValueError:
            continue
    return removed_share([SimpleNamespace(memory_id=_row(b).get("memory_id")) for b in base], models)


# --- running the suites -------------------------------------------------------------------------


def load_suite(name: str, directory: Path | None = None) -> dict:
    """A suite's JSON (as written by ``ExpectationSuite.to_json_dict()``)."""
    path = (directory or EXPECTATIONS_DIR) / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidState(f"gate suite missing: {path}") from None
    except json.JSONDecodeError as e:
        from dreaming.errors import BadInput

        raise BadInput(f"invalid JSON: {e.msg}", file=str(path), line=e.lineno) from None


_GX_LOCK = threading.Lock()
"""Great Expectations is not thread-safe: two gates at once in one process (dreams on threads: `dreams api`,
a fleet on threads) fail with ``SuiteParameterParser.push_first() missing 1 required positional argument``
from its shared pyparsing parser. One gate at a time per process."""


def run_gate(*args: Any, **kwargs: Any) -> GateResult:
    """``_run_gate`` (below), one call at a time in this process (``_GX_LOCK``)."""
    with _GX_LOCK:
        return _run_gate(*args, **kwargs)


def _run_gate(
    candidate: Sequence[Memory | Mapping],
    changes: Sequence[Change | Mapping],
    base: Sequence[Memory | Mapping],
    input_session_ids: Sequence[str],
    settings: Settings,
    *,
    mode: GateMode = "auto",
    data_docs: bool = False,
    suites_dir: Path | None = None,
) -> GateResult:
    """Validate a candidate store version and its changeset; never raises on a failed expectation.

    ``candidate``/``base``/``changes`` may be models or raw rows (dicts as read from Parquet), so
    the gate sees what is stored even where the models would refuse it. ``data_docs=True`` also
    renders GX Data Docs HTML under ``<lake>/data_docs/``.
    """
    if mode not in ("auto", "review"):
        raise InvalidState(f"gate mode must be 'auto' or 'review', got {mode!r}")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    frames = {
        "candidate_store": store_frame(candidate, base),
        "changeset": changeset_frame(changes, base, input_session_ids),
    }
    ctx = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),  # no /tmp litter
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        ),
    )
    docs_dir = settings.home / "data_docs"
    if data_docs:
        ctx.add_data_docs_site(
            site_name="lake",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = ctx.data_sources.add_pandas("dream")
    params = {"max_removed_share": float(settings.max_removed_share)}
    results: list[ExpectationResult] = []
    stats = {"evaluated_expectations": 0, "successful_expectations": 0, "rows": {}}
    vds = []
    for suite_name in SUITES:
        spec = load_suite(suite_name, suites_dir)
        suite = ctx.suites.add(gx.ExpectationSuite(**spec))
        batch = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("all")
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"gate_{suite_name}", data=batch, suite=suite))
        vds.append((suite_name, vd))
    index_col = {"candidate_store": "memory_id", "changeset": "change_id"}
    for suite_name, vd in vds:
        df = frames[suite_name]
        stats["rows"][suite_name] = len(df)
        res = vd.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=params,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_col[suite_name]]},
        )
        for r in res.results:
            results.append(_expectation_result(suite_name, r, mode))
    if data_docs:
        from great_expectations.checkpoint import UpdateDataDocsAction

        for suite_name, vd in vds:  # one checkpoint per frame: each definition needs its own dataframe
            single = ctx.checkpoints.add(
                gx.Checkpoint(name=f"gate_{suite_name}", validation_definitions=[vd],
                              actions=[UpdateDataDocsAction(name="docs", site_names=["lake"])])
            )
            single.run(batch_parameters={"dataframe": frames[suite_name]}, expectation_parameters=params)
    stats["evaluated_expectations"] = len(results)
    stats["successful_expectations"] = sum(r.success for r in results)
    success = not any(not r.success and r.blocking for r in results)
    return GateResult(
        success=success,
        mode=mode,
        results=results,
        statistics=stats,
        checked_at=iso(utcnow()),
        data_docs=str(docs_dir / "index.html") if data_docs else None,
    )


def _expectation_result(suite: str, r, mode: str) -> ExpectationResult:
    cfg = r.expectation_config
    meta = cfg.meta or {}
    raw = r.result or {}
    exc = r.exception_info or {}
    error = None
    if isinstance(exc, dict) and exc.get("raised_exception"):
        error = str(exc.get("exception_message"))
    elif isinstance(exc, dict):  # GX nests {expectation_id: {...}} for some failures
        for v in exc.values():
            if isinstance(v, dict) and v.get("raised_exception"):
                error = str(v.get("exception_message"))
    examples = []
    for ex in (raw.get("unexpected_index_list") or [])[:MAX_EXAMPLES]:
        examples.append({k: _short(v) for k, v in dict(ex).items()})
    if not examples and raw.get("partial_unexpected_list"):
        examples = [{"value": _short(v)} for v in raw["partial_unexpected_list"][:MAX_EXAMPLES]]
    relaxed = bool(meta.get("relaxed_in_review"))
    return ExpectationResult(
        suite=suite,
        name=meta.get("name") or cfg.type,
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        success=bool(r.success),
        blocking=not (relaxed and mode == "review"),
        relaxed_in_review=relaxed,
        unexpected_count=_plain(raw.get("unexpected_count")),
        observed_value=_plain(raw.get("observed_value")),
        examples=_jsonable(examples),
        description=meta.get("description", ""),
        error=error,
    )


def _short(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, str):
        from dreaming.redaction import redact

        v = redact(v.encode("utf-8", errors="backslashreplace").decode("utf-8"))[0]  # gate.json, artifacts
        if len(v) > MAX_EXAMPLE_CHARS:
            return v[:MAX_EXAMPLE_CHARS] + f"… ({len(v)} chars)"
    return v


def _plain(v: Any) -> Any:
    """numpy scalars → Python; NaN → None."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: _plain(o) if hasattr(o, "item") else str(o)))


# --- gating a dream -------------------------------------------------------------------------------


def gate_path(settings: Settings, dream_id: str, reviewed: bool = False) -> Path:
    return settings.dreams_dir / dream_id / ("gate.reviewed.json" if reviewed else "gate.json")


def write_gate(settings: Settings, dream_id: str, result: GateResult, reviewed: bool = False) -> Path:
    return write_text_atomic(
        json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
        gate_path(settings, dream_id, reviewed),
        settings.staging_dir,
    )


def read_rows(path: Path) -> list[dict]:
    """Raw rows of a Parquet file (the gate checks what is stored, not what the models accept)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def gate_dream(
    catalog: "Catalog", dream_id: str, *, mode: GateMode | None = None, data_docs: bool = False
) -> GateResult:
    """Gate a completed dream's candidate version and changeset; record the result.

    Writes ``dreams/<id>/gate.json`` and ``dream.promotion.gate``; a failed gate sets the promotion
    state to ``gate_failed`` (the head is never touched here). ``mode`` defaults to ``review`` for
    dreams that require approval, else ``auto``. A dream already decided (promoted, rejected,
    conflict) is not gated again: its recorded result is returned.
    """
    settings = catalog.settings
    d = catalog.get_dream(dream_id)
    if d.promotion.state in ("promoted", "rejected", "conflict") and d.promotion.gate:
        return GateResult.from_dict(d.promotion.gate)
    if d.status != "completed" or d.candidate_version is None:
        raise InvalidState(f"dream {d.id} is {d.status} without a candidate version; only completed dreams are gated")
    mode = mode or ("review" if d.require_approval else "auto")
    candidate = read_rows(settings.home / catalog.get_version(d.store_id, d.candidate_version)["path"])
    base = (
        read_rows(settings.home / catalog.get_version(d.store_id, d.base_version)["path"])
        if d.base_version is not None
        else []
    )
    cs_path = settings.dreams_dir / d.id / "changeset.parquet"
    changes = read_rows(cs_path) if cs_path.exists() else []
    result = run_gate(candidate, changes, base, d.evidence_session_ids, settings, mode=mode, data_docs=data_docs)
    if not result.success and mode == "auto":
        # Failed only on what a person may waive (tainted content, a large removal)? Then the dream
        # needs a person, not a verdict: it waits for approval instead of ending gate_failed.
        reviewed = result.as_review()  # mode only decides what blocks: no second validation
        if reviewed.success:
            reviewed.needs_review = True
            result = reviewed
    result.store_id, result.version = d.store_id, d.candidate_version
    write_gate(settings, d.id, result)
    record_gate(catalog, d.id, result)
    return result


def record_gate(catalog: "Catalog", dream_id: str, result: GateResult) -> None:
    """Store the gate result on the dream; a failure moves an undecided promotion to gate_failed."""

    def mutate(d) -> None:
        if d.promotion.state in ("promoted", "rejected", "conflict"):
            return
        d.promotion.gate = result.to_dict()
        if result.needs_review:
            d.promotion.state = "awaiting_approval"
            d.promotion.reason = result.summary()
        elif not result.success:
            d.promotion.state = "gate_failed"
            d.promotion.decided_by = "gate"
            d.promotion.decided_at = utcnow()
            d.promotion.reason = result.summary()
        elif d.promotion.state == "gate_failed":  # a passing re-gate (e.g. in review mode) reopens it
            d.promotion.state = "not_requested"
            d.promotion.decided_by = d.promotion.decided_at = d.promotion.reason = None

    catalog.update_dream(dream_id, mutate)
