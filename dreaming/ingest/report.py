"""What an ingest did, per file and in total (``dreams ingest --json`` prints ``IngestReport.to_dict``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class FileResult:
    path: str
    status: str  # ingested | skipped | failed
    format: str | None = None
    snapshot_id: str | None = None
    sessions: int = 0
    events: int = 0
    tool_calls: int = 0
    errors: int = 0  # error events seen in the file (is_error or session.error)
    error: str | None = None  # why the file failed (names file:line and field)
    note: str | None = None  # why a file was skipped
    files: list[str] = field(default_factory=list)  # lake-relative parquet files written
    days: list[str] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)  # lines skipped or repaired: {line, field, reason, action, count}
    ignored: dict[str, int] = field(default_factory=dict)  # records without events by design, per kind
    redactions: dict[str, int] = field(default_factory=dict)  # secrets replaced, per kind (values)
    originals: str | None = None  # --keep-secrets: lake-relative sidecar with the unredacted originals

    def count(self, action: str) -> int:
        """Lines skipped or repaired (an issue may stand for several lines: ``count``)."""
        return sum(i["count"] for i in self.issues if i["action"] == action)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    recovery: dict | None = None  # what the fsck run at the start of the ingest did (None: nothing)

    def _with(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def ingested(self) -> list[FileResult]:
        return self._with("ingested")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def sessions(self) -> int:
        return sum(f.sessions for f in self.ingested)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.ingested)

    @property
    def tool_calls(self) -> int:
        return sum(f.tool_calls for f in self.ingested)

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.ingested)

    @property
    def redactions(self) -> dict[str, int]:
        total: Counter = Counter()
        for f in self.ingested:
            total.update(f.redactions)
        return dict(sorted(total.items()))

    @property
    def ok(self) -> bool:
        return not self.failed

    def totals(self) -> dict:
        return {
            "files": len(self.files),
            "ingested": len(self.ingested),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "sessions": self.sessions,
            "events": self.events,
            "tool_calls": self.tool_calls,
            "errors": self.errors,
            "skipped_lines": sum(f.count("skipped") for f in self.ingested),
            "repaired_lines": sum(f.count("repaired") for f in self.ingested),
            "ignored_records": sum(sum(f.ignored.values()) for f in self.ingested),
            "redacted": sum(self.redactions.values()),
        }

    def to_dict(self) -> dict:
        return {"totals": self.totals(), "redactions": self.redactions, "recovery": self.recovery,
                "files": [f.to_dict() for f in self.files]}


__all__ = ["FileResult", "IngestReport"]
