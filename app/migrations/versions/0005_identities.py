"""identities: people added through the admin API, for assignees across systems

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

One row per person (the lower-case email is the canonical assignee), with their user id
per system as JSON. People from config.yaml are not stored: the two are combined when
the map is built (docs/configuration.md, ``identities``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("email", sa.String(length=320), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("ids", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("identities")
