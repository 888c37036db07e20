"""link lookup by (system, external_id); a partial index for the outbox; create claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``ix_links_system_external``: webhooks name InboxOps tickets and hookstream issues
without a scope; without this index SQLite searched ``uq_links_object`` on its
``system`` prefix alone, a scan of every link of that system (docs/benchmarks.md).
``ix_links_pending`` replaces ``ix_links_due``: the dispatcher claims dirty, live links
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

PENDING = sa.text("dirty AND NOT dead")


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(
            sa.Column("create_claims", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("ix_links_system_external", "links", ["system", "external_id"])
    op.create_index(
        "ix_links_pending", "links", ["id"], sqlite_where=PENDING, postgresql_where=PENDING
    )
    op.drop_index("ix_links_due", table_name="links")


def downgrade() -> None:
    op.create_index("ix_links_due", "links", ["dirty", "next_attempt_at"])
    op.drop_index("ix_links_pending", table_name="links")
    op.drop_index("ix_links_system_external", table_name="links")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("create_claims")
