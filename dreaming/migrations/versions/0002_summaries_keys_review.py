"""Session summaries in the index; API keys; review policy, tiers, decisions and notifications.

- ``session_index`` gains the session's summary per file (tool calls, errors, outcome, source format),
  so ``dreams sessions`` answers single-file sessions from the catalog (issue 15). Rows indexed before
  this revision keep NULLs and are computed from their files as before.
- ``api_keys``: hashed keys of the HTTP API (issue 16).
- ``stores.review_policy`` / ``read_only`` / ``context_stores``, ``rejected_changes.reason``,
  ``change_decisions`` and ``notifications`` (issue 17).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _add_columns(table: str, *columns: sa.Column) -> None:
    """Add the columns the table lacks (a catalog stamped at the baseline may have been made by a newer
    ``create_all`` that has some of them already)."""
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    todo = [c for c in columns if c.name not in have]
    if todo:
        with op.batch_alter_table(table) as b:
            for c in todo:
                b.add_column(c)


def upgrade() -> None:
    _add_columns("session_index", sa.Column("tool_calls", sa.Integer), sa.Column("errors", sa.Integer),
                 sa.Column("outcome", sa.String), sa.Column("outcome_seq", sa.Integer),
                 sa.Column("source_format", sa.String))
    _add_columns("stores", sa.Column("review_policy", sa.JSON),
                 sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
                 sa.Column("context_stores", sa.JSON))
    _add_columns("rejected_changes", sa.Column("reason", sa.String))
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "api_keys" in have:  # made by a newer create_all (see _add_columns)
        return
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("agent_id", sa.String),
        sa.Column("name", sa.String, nullable=False, server_default=""),
        sa.Column("secret_sha256", sa.String, nullable=False, unique=True),
        sa.Column("hint", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "change_decisions",
        sa.Column("store_id", sa.String, primary_key=True),
        sa.Column("dream_id", sa.String, primary_key=True),
        sa.Column("change_id", sa.String, primary_key=True),
        sa.Column("op", sa.String, nullable=False),
        sa.Column("kind", sa.String),
        sa.Column("decision", sa.String, nullable=False),
        sa.Column("rule", sa.String),
        sa.Column("reason", sa.String),
        sa.Column("decided_by", sa.String),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_change_decisions_store", "store_id", "decided_at"),
    )
    op.create_table(
        "notifications",
        sa.Column("event_key", sa.String, primary_key=True),
        sa.Column("target", sa.String, primary_key=True),
        sa.Column("dream_id", sa.String, nullable=False, index=True),
        sa.Column("store_id", sa.String, nullable=False),
        sa.Column("event", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("change_decisions")
    op.drop_table("api_keys")
    with op.batch_alter_table("rejected_changes") as b:
        b.drop_column("reason")
    with op.batch_alter_table("stores") as b:
        b.drop_column("context_stores")
        b.drop_column("read_only")
        b.drop_column("review_policy")
    with op.batch_alter_table("session_index") as b:
        for c in ("source_format", "outcome_seq", "outcome", "errors", "tool_calls"):
            b.drop_column(c)
