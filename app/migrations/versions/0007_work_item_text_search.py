"""an index for substring search in work item titles and descriptions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The console's search (``Tx.page_items(text=...)``) is a substring match, ignoring case,
on the title and the description. Without an index every work item is read (90-350 ms at
100,000 items, bench/console.py). This adds one, kept in step by the database itself:

- SQLite: ``work_items_fts``, an FTS5 table with the trigram tokenizer (SQLite 3.34 or
  later) over ``work_items`` (external content: it holds the index, not a copy of the
  text), kept in step by three triggers. The store asks it for the candidates and keeps
  the exact LIKE on top, so the results are exactly those of the scan. On an SQLite
  without FTS5 or the trigram tokenizer nothing is made and the search scans as before.
- PostgreSQL: the ``pg_trgm`` extension and a GIN trigram index on each column, which
  the ILIKE the store runs uses as it is. ``CREATE EXTENSION`` needs a role allowed to
  create it (a superuser, or since PostgreSQL 13 the database owner, pg_trgm being a
  trusted extension); refused, or with pg_trgm not installed, the migration makes no
  index, logs a warning and the search scans as before (docs/deployment.md says how to
  add the index later).

The FTS5 index names each item by its ``rowid``: a later migration that rebuilds
``work_items`` on SQLite (a batch ``ALTER``, which copies the table) must recreate the
triggers and ``INSERT INTO work_items_fts (work_items_fts) VALUES ('rebuild')``.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: The objects made here outside app/tables.py (the schema comparison leaves them out).
FTS_TABLE = "work_items_fts"
TRGM_INDEXES = ("ix_work_items_title_trgm", "ix_work_items_description_trgm")

_SQLITE_TRIGGERS = {
    "work_items_fts_insert": """
        CREATE TRIGGER work_items_fts_insert AFTER INSERT ON work_items BEGIN
            INSERT INTO work_items_fts (rowid, title, description)
            VALUES (new.rowid, new.title, new.description);
        END""",
    "work_items_fts_delete": """
        CREATE TRIGGER work_items_fts_delete AFTER DELETE ON work_items BEGIN
            INSERT INTO work_items_fts (work_items_fts, rowid, title, description)
            VALUES ('delete', old.rowid, old.title, old.description);
        END""",
    "work_items_fts_update": """
        CREATE TRIGGER work_items_fts_update AFTER UPDATE OF title, description ON work_items
        WHEN old.title IS NOT new.title OR old.description IS NOT new.description BEGIN
            INSERT INTO work_items_fts (work_items_fts, rowid, title, description)
            VALUES ('delete', old.rowid, old.title, old.description);
            INSERT INTO work_items_fts (rowid, title, description)
            VALUES (new.rowid, new.title, new.description);
        END""",
}


def _sqlite_upgrade(conn: sa.Connection) -> None:
    try:
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE work_items_fts USING fts5("
            "title, description, content='work_items', content_rowid='rowid',"
            " tokenize='trigram')"
        )
    except sa.exc.OperationalError as exc:  # no FTS5, or SQLite before 3.34
        log.warning("no index for the work item search (it scans instead): %s", exc)
        return
    for statement in _SQLITE_TRIGGERS.values():
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql("INSERT INTO work_items_fts (work_items_fts) VALUES ('rebuild')")


def _postgres_upgrade(conn: sa.Connection) -> None:
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm could not be created, so the work item search has no index and scans"
            " instead (see docs/deployment.md): %s",
            str(exc.orig).splitlines()[0] if exc.orig else exc,
        )
        return
    for name, column in zip(TRGM_INDEXES, ("title", "description"), strict=True):
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {name} ON work_items USING gin ({column} gin_trgm_ops)"
        )


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _sqlite_upgrade(conn)
    elif conn.dialect.name == "postgresql":
        _postgres_upgrade(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    elif conn.dialect.name == "postgresql":
        for name in TRGM_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
