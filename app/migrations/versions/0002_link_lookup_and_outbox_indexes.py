"""link lookup by (system, external_id); a partial index for the outbox; create claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``ix_links_system_external``: webhooks name InboxOps tickets and hookstream issues
without a scope; without this index SQLite searched ``uq_links_object`` on its
``system`` prefix alone, a scan of every link of that system (docs/benchmarks.md).
``ix_links_dead_letters`` (partial) replaces ``ix_links_dead``, which the planner preferred
for the claim and walked every live link with. ``ix_links_pending`` replaces
``ix_links_due``: the dispatcher claims dirty, live links
in id order, which this partial index yields without a sort however big the backlog.
``links.create_claims`` counts the claims of a link still to be created: only past the
first can an earlier attempt have made the object, so only then do DevHelm and
incident.io (no idempotency key) search for it before creating.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# spelled as the claim query spells it (``dirty IS 1`` on SQLite): SQLite uses a partial
# index only when the query's WHERE repeats the index's terms
PENDING_SQLITE = sa.text("dirty IS 1 AND dead IS 0")
PENDING_PG = sa.text("dirty IS TRUE AND dead IS FALSE")


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(
            sa.Column("create_claims", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("ix_links_system_external", "links", ["system", "external_id"])
    op.create_index(
        "ix_links_pending",
        "links",
        ["id"],
        sqlite_where=PENDING_SQLITE,
        postgresql_where=PENDING_PG,
    )
    op.drop_index("ix_links_due", table_name="links")
    op.create_index(
        "ix_links_dead_letters",
        "links",
        ["id"],
        sqlite_where=sa.text("dead IS 1"),
        postgresql_where=sa.text("dead IS TRUE"),
    )
    op.drop_index("ix_links_dead", table_name="links")


def downgrade() -> None:
    op.create_index("ix_links_due", "links", ["dirty", "next_attempt_at"])
    op.create_index("ix_links_dead", "links", ["dead"])
    op.drop_index("ix_links_dead_letters", table_name="links")
    op.drop_index("ix_links_pending", table_name="links")
    op.drop_index("ix_links_system_external", table_name="links")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("create_claims")
