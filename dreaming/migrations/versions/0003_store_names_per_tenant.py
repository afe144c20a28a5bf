"""Store names unique per tenant, not per server (issue 16).

A name clash used to tell tenant B that tenant A has a store of that name. ``stores`` gains ``tenant``
(the tenant of its ``scope``: ``acme`` for ``acme`` and ``acme/bot``), filled from the scope, and the
unique constraint moves from ``name`` to ``(tenant, name)``. The names of an older catalog are unique
server-wide, so they are unique per tenant too. A downgrade fails while two tenants share a name.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW = "uq_stores_tenant_name"
_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}  # names SQLite's unnamed constraints in batch mode


def _unique_on(columns: list[str]) -> str | None:
    for u in sa.inspect(op.get_bind()).get_unique_constraints("stores"):
        if list(u["column_names"]) == columns:
            return u["name"] or "uq_stores_" + "_".join(columns)
    return None


def upgrade() -> None:
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("stores")}
    if "tenant" not in have:
        with op.batch_alter_table("stores") as b:
            b.add_column(sa.Column("tenant", sa.String, nullable=True))
    stores = sa.table("stores", sa.column("id", sa.String), sa.column("scope", sa.String),
                      sa.column("tenant", sa.String))
    for sid, scope in bind.execute(sa.select(stores.c.id, stores.c.scope).where(stores.c.tenant.is_(None))).all():
        bind.execute(stores.update().where(stores.c.id == sid).values(tenant=scope.partition("/")[0]))
    old = _unique_on(["name"])
    with op.batch_alter_table("stores", naming_convention=_CONVENTION) as b:
        b.alter_column("tenant", existing_type=sa.String, nullable=False)
        if old is not None:
            b.drop_constraint(old, type_="unique")
        if _unique_on(["tenant", "name"]) is None:
            b.create_unique_constraint(NEW, ["tenant", "name"])


def downgrade() -> None:
    with op.batch_alter_table("stores", naming_convention=_CONVENTION) as b:
        b.drop_constraint(NEW, type_="unique")
        b.create_unique_constraint("uq_stores_name", ["name"])
        b.drop_column("tenant")
