"""The catalog's tables (SQLAlchemy Core): the one definition of its schema.

``dreaming.catalog`` reads and writes them (and re-exports them); Alembic migrations in
``dreaming/migrations`` bring a database to this schema (``tests/test_catalog_postgres.py`` checks
that the migrated schema equals these tables, on SQLite and on PostgreSQL). To change the schema:
docs/operations.md, "Migrations".
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),  # unique per tenant (0003), see uq_stores_tenant_name
    sa.Column("description", sa.String, nullable=False, default=""),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("scope", sa.String, nullable=False),
    sa.Column("head_version", sa.Integer),
    sa.Column("forked_from", sa.JSON),  # {"store_id", "version", "dream_id"} for create_new outputs
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True)),
    # 0002: review and tiers (issue 17)
    sa.Column("review_policy", sa.JSON),  # the store's review policy (NULL: the defaults)
    sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),  # dreams never write to it
    sa.Column("context_stores", sa.JSON),  # ids of read-only stores this store reads as context
    # 0003: the tenant of ``scope`` (set by Catalog.insert_store); a name is unique within a tenant (issue 16)
    sa.Column("tenant", sa.String, nullable=False),
    sa.UniqueConstraint("tenant", "name", name="uq_stores_tenant_name"),
)

store_versions = sa.Table(
    "store_versions",
    metadata,
    sa.Column("store_id", sa.String, sa.ForeignKey("stores.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("state", sa.String, nullable=False),  # reserved | ready
    sa.Column("parent_version", sa.Integer),
    sa.Column("created_by", sa.JSON, nullable=False),  # {"type": "dream|user|api", "id": ...}
    sa.Column("message", sa.String, nullable=False, default=""),
    sa.Column("path", sa.String),
    sa.Column("file_sha256", sa.String),
    sa.Column("memory_count", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

dreams = sa.Table(
    "dreams",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("store_id", sa.String, nullable=False, index=True),
    sa.Column("status", sa.String, nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("archived_at", sa.DateTime(timezone=True)),
    sa.Column("body", sa.JSON, nullable=False),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("agent_id", sa.String),
    sa.Column("source_path", sa.String, nullable=False),
    sa.Column("source_sha256", sa.String, nullable=False, index=True),
    sa.Column("source_format", sa.String, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # lake-relative parquet paths written
    sa.Column("days", sa.JSON, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

originals = sa.Table(  # opt-in (--keep-secrets): the unredacted originals of a snapshot's redacted rows
    "originals",
    metadata,
    sa.Column("snapshot_id", sa.String, primary_key=True),
    sa.Column("path", sa.String, nullable=False),  # lake-relative, under originals/ (never read by the lake)
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

lake_files = sa.Table(  # the session index's file list (dreaming.lake_index): a registered file without a row is
    # indexed from the file on first use
    "lake_files",
    metadata,
    sa.Column("path", sa.String, primary_key=True),  # lake-relative, as in snapshots.files
    sa.Column("snapshot_id", sa.String, nullable=False, index=True),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("day", sa.String),  # the hive day= partition, YYYY-MM-DD
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("unique_ids", sa.Boolean),  # no event id twice in the file (a session read from it alone needs no dedupe)
)

session_index = sa.Table(  # one row per session per snapshot file, written with the snapshot (dreaming.lake_index)
    "session_index",
    metadata,
    sa.Column("path", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("agent_id", sa.String),  # the least and greatest agent id of the session's rows in this file
    sa.Column("agent_id_max", sa.String),
    sa.Column("first_ts", sa.DateTime(timezone=True), nullable=False),  # UTC
    sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("day", sa.String),
    sa.Column("events", sa.Integer, nullable=False),  # rows in this file, before the lake's dedupe
    # the session's summary in this file (0002; NULL on rows indexed before it): with the file's ``unique_ids``
    # and the session in no other file, the row *is* the session's ``sessions`` row (dreaming.lake_index)
    sa.Column("tool_calls", sa.Integer),
    sa.Column("errors", sa.Integer),
    sa.Column("outcome", sa.String),  # the outcome of the greatest seq that has one
    sa.Column("outcome_seq", sa.Integer),
    sa.Column("source_format", sa.String),
    sa.Index("ix_session_index_session", "tenant", "session_id"),
    sa.Index("ix_session_index_last_ts", "tenant", "last_ts"),
)

dreamt_sessions = sa.Table(
    "dreamt_sessions",
    metadata,
    sa.Column("store_id", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, primary_key=True),
    sa.Column("dream_id", sa.String, nullable=False),
)

rejected_changes = sa.Table(
    # changes a person rejected on purpose: later dreams of the store do not propose them again
    # unless they bring sessions the rejected evidence did not have (dreaming.rejections)
    "rejected_changes",
    metadata,
    sa.Column("store_id", sa.String, primary_key=True),
    sa.Column("fingerprint", sa.String, primary_key=True),  # op + target + normalised content + evidence
    sa.Column("key", sa.String, nullable=False, index=True),  # op + target + normalised content
    sa.Column("evidence_sessions", sa.JSON, nullable=False),  # sorted session ids
    sa.Column("dream_id", sa.String, nullable=False),
    sa.Column("change_id", sa.String, nullable=False),
    sa.Column("decided_by", sa.String),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.String),  # 0002: the reviewer's reason
)

dream_leases = sa.Table(
    # who is running a pending/running dream, renewed while it runs (dreaming.leases); a dream
    # whose lease expired lost its process and is reaped whatever the orchestrator says
    "dream_leases",
    metadata,
    sa.Column("dream_id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),  # host:pid:random of the process
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


# --- 0002 ------------------------------------------------------------------------------------------

api_keys = sa.Table(
    # keys of the HTTP API (dreaming.api): stored as a SHA-256 of the secret, never the secret; every request
    # is confined to its key's tenant (and agent, when set)
    "api_keys",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, index=True),
    sa.Column("agent_id", sa.String),
    sa.Column("name", sa.String, nullable=False, server_default=""),
    sa.Column("secret_sha256", sa.String, nullable=False, unique=True),
    sa.Column("hint", sa.String, nullable=False),  # the secret's last characters, for people telling keys apart
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

change_decisions = sa.Table(
    # every decision on a dream's change, by a person or by the store's review policy (issue 17): what
    # `dreams review stats` counts per change kind and reason
    "change_decisions",
    metadata,
    sa.Column("store_id", sa.String, primary_key=True),
    sa.Column("dream_id", sa.String, primary_key=True),
    sa.Column("change_id", sa.String, primary_key=True),
    sa.Column("op", sa.String, nullable=False),
    sa.Column("kind", sa.String),
    sa.Column("decision", sa.String, nullable=False),  # approved | rejected
    sa.Column("rule", sa.String),  # the policy rule that decided or held it
    sa.Column("reason", sa.String),
    sa.Column("decided_by", sa.String),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_change_decisions_store", "store_id", "decided_at"),
)

notifications = sa.Table(
    # webhook deliveries (issue 17): one row per event and target, so an event is sent once however often
    # the hook that raises it runs
    "notifications",
    metadata,
    sa.Column("event_key", sa.String, primary_key=True),  # dream id + event (awaiting_approval, promoted, ...)
    sa.Column("target", sa.String, primary_key=True),  # the webhook URL (or a block's name)
    sa.Column("dream_id", sa.String, nullable=False, index=True),
    sa.Column("store_id", sa.String, nullable=False),
    sa.Column("event", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
)
