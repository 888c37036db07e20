"""what the gateway sent an object and has not seen answered

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

``links.unconfirmed`` holds the states (canonical fields) a write claimed for the link
is sending, or sent without its answer being recorded (in flight, its answer lost, its
process killed). A change the engine then sees on the object to one of those values is
the gateway's own write coming back, not a person's edit: it must not win over a change
the item took since that write was claimed. A finished write clears it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("unconfirmed", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("unconfirmed")
