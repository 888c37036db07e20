"""a work item's writes read from the write attempts, not copied into the history

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Each write was recorded twice: a write attempt and a history row holding the same
payload. A successful attempt now carries what its history entry said (the object's
``external_id`` and the item ``version`` written), and the history of an item reads its
writes from the attempts, by ``ix_write_attempts_work_item_id``. The attempts from
before this revision have neither column (NULL): their history rows are kept and stay
the entries for those writes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("write_attempts", sa.Column("external_id", sa.String(length=200)))
    op.add_column("write_attempts", sa.Column("version", sa.Integer()))
    op.create_index("ix_write_attempts_work_item_id", "write_attempts", ["work_item_id"])


def downgrade() -> None:
    op.drop_index("ix_write_attempts_work_item_id", table_name="write_attempts")
    op.drop_column("write_attempts", "version")
    op.drop_column("write_attempts", "external_id")
