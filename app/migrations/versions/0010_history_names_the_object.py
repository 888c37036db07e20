"""history entries name the object they are about

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

A work item may have several objects of one system (two tickets linked to one item):
an entry that named only the system (``change`` by inboxops, ``conflict_lost``,
``not_synced``, ``dead_letter``) did not tell an operator which. ``history.external_id``
names the object; entries recorded before keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.drop_column("external_id")
