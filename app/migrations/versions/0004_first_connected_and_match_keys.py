"""safe first start and link rules: when each system was first connected; the match-key index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``systems.connected_at`` is the moment the gateway was first connected to a system: its
poll cursor starts there, and creation rules apply only to objects created since (or
inside a backfill window). A system already polled before this migration counts as
connected since its poll cursor (it has been running; its history is already handled).
``match_keys`` indexes the keys the link rules take from the objects seen.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("systems") as batch:
        batch.add_column(sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE systems SET connected_at = poll_cursor WHERE poll_cursor IS NOT NULL")
    op.create_table(
        "match_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("known_state", sa.JSON(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("rule", "side", "system", "scope", "external_id", name="uq_match_keys"),
    )
    op.create_index("ix_match_keys_lookup", "match_keys", ["rule", "side", "key"])


def downgrade() -> None:
    op.drop_index("ix_match_keys_lookup", table_name="match_keys")
    op.drop_table("match_keys")
    with op.batch_alter_table("systems") as batch:
        batch.drop_column("connected_at")
