"""The data shapes, defined once: transcript events, memories (a store version) and changes.

Every module that reads or writes these tables imports the schemas from here. The Arrow schemas
(``TS``, ``EVENT_SCHEMA``, ``SOURCE_TYPE``, ``MEMORY_SCHEMA``, ``CHANGE_SCHEMA``) are built on first use,
so that importing the vocabularies and limits does not import pyarrow (`dreams --help` stays quick).
"""

from __future__ import annotations

# --- vocabularies -------------------------------------------------------------------------------

ROLES = ("user", "assistant", "tool", "system")
KINDS = ("fact", "preference", "mistake", "workflow", "insight", "note")
OPS = ("add", "update", "merge", "supersede", "prune", "keep")
DECISIONS = ("proposed", "accepted", "rejected", "edited")
TAINTS = ("trusted", "user", "tool_output", "untrusted")
SOURCE_FORMATS = ("anthropic", "claude-code", "openai", "mini-swe-agent")

DREAM_STATUSES = ("pending", "running", "completed", "failed", "canceled")
TERMINAL_STATUSES = ("completed", "failed", "canceled")
PROMOTION_STATES = ("not_requested", "awaiting_approval", "promoted", "rejected", "gate_failed", "conflict")

MAX_PATH_BYTES = 1024
MAX_CONTENT_BYTES = 102_400
MAX_MEMORIES = 10_000


# --- the Arrow schemas, built on first access (PEP 562) -------------------------------------

_ARROW = ("TS", "EVENT_SCHEMA", "SOURCE_TYPE", "MEMORY_SCHEMA", "CHANGE_SCHEMA")


def _build_arrow() -> dict:
    import pyarrow as pa

    TS = pa.timestamp("us", tz="UTC")

    # --- transcripts (DESIGN §4): one row per event ------------------------------------------------

    EVENT_SCHEMA = pa.schema(
        [
            pa.field("tenant", pa.string(), nullable=False),
            pa.field("agent_id", pa.string()),
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("seq", pa.int32(), nullable=False),  # order within the session
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("ts", TS, nullable=False),
            pa.field("type", pa.string(), nullable=False),  # Anthropic's event vocabulary
            pa.field("role", pa.string()),  # user | assistant | tool | system
            pa.field("text", pa.string()),  # flattened text
            pa.field("tool_name", pa.string()),
            pa.field("tool_use_id", pa.string()),
            pa.field("tool_input", pa.string()),  # JSON string
            pa.field("is_error", pa.bool_()),
            pa.field("outcome", pa.string()),  # satisfied | failed | a reward value ...
            pa.field("source_format", pa.string(), nullable=False),
            pa.field("snapshot_id", pa.string(), nullable=False),
            pa.field("raw", pa.string()),  # the original JSON, for audit
        ]
    )
    """Columns of a transcript snapshot file. ``tenant`` and ``day`` are also the hive partition keys
    (``transcripts/tenant=<t>/day=<YYYY-MM-DD>/<snapshot_id>.parquet``)."""

    # --- memories (DESIGN §2): one row per memory in a store version ------------------------------

    SOURCE_TYPE = pa.struct([("session_id", pa.string()), ("event_id", pa.string()), ("ts", TS)])

    MEMORY_SCHEMA = pa.schema(
        [
            pa.field("memory_id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("content", pa.string(), nullable=False),
            pa.field("content_sha256", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("key", pa.string()),
            pa.field("sources", pa.list_(SOURCE_TYPE)),
            pa.field("support", pa.int32()),
            pa.field("first_seen", TS),
            pa.field("last_seen", TS),
            pa.field("valid_until", TS),
            pa.field("confidence", pa.float64()),
            pa.field("taint", pa.string()),
            pa.field("pinned", pa.bool_()),
            pa.field("created_at", TS),
            pa.field("updated_at", TS),
            # added later, nullable: older version files lack them (read as None / [])
            pa.field("origin", pa.string()),  # the instruction file a rule was split from, e.g. "CLAUDE.md"
            pa.field("heading", pa.list_(pa.string())),  # the heading trail it sat under
        ]
    )

    # --- changes (DESIGN §2): one row per proposed change of a dream ------------------------------

    CHANGE_SCHEMA = pa.schema(
        [
            pa.field("change_id", pa.string(), nullable=False),
            pa.field("dream_id", pa.string(), nullable=False),
            pa.field("op", pa.string(), nullable=False),
            pa.field("memory_id", pa.string()),
            pa.field("merged_ids", pa.list_(pa.string())),
            pa.field("superseded_by", pa.string()),
            pa.field("path", pa.string()),
            pa.field("kind", pa.string()),
            pa.field("key", pa.string()),
            pa.field("before", pa.string()),
            pa.field("after", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("evidence", pa.list_(SOURCE_TYPE)),
            pa.field("support", pa.int32()),
            pa.field("confidence", pa.float64()),
            pa.field("taint", pa.string()),
            pa.field("decision", pa.string(), nullable=False),
        ]
    )

    return {name: value for name, value in locals().items() if name in _ARROW}


def __getattr__(name: str):
    if name in _ARROW:
        globals().update(_build_arrow())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
