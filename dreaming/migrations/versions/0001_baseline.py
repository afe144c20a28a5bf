"""Baseline: the catalog schema as ``metadata.create_all`` made it before migrations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from dreaming.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline.metadata.create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    baseline.metadata.drop_all(op.get_bind())
