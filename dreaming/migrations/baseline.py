"""The catalog schema at revision 0001, frozen: a copy of dreaming/catalog.py's tables as they were
when migrations began. Never edit it: change the schema with a new migration in versions/.
Revision 0001 creates these tables; ``upgrade`` adds the ones a pre-migration catalog lacks."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
    sa.Column("description", sa.String, nullable=False, default=""),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("scope", sa.String, nullable=False),
    sa.Column("head_version", sa.Integer),
    sa.Column("forked_from", sa.JSON),  # {"store_id", "version", "dream_id"} for create_new outputs
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True)),
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
