"""the create intent: when the first create attempt started, and the body it sent

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

``links.create_started_at`` bounds the search a retried create makes for an earlier
attempt's object (only objects created since are looked at, never the vendor's history).
``links.create_payload`` keeps the first attempt's fields with the idempotency key, so a
retry sends the same body (InboxOps answers 409 ``idempotency_conflict`` otherwise).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("create_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("create_payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("create_payload")
        batch.drop_column("create_started_at")
