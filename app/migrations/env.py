"""Alembic environment: runs migrations on the connection ``app.store`` hands over.

``app.store.migrate`` opens the async engine and calls alembic with the sync connection in
``config.attributes["connection"]``; the CLI ``syncgate migrate`` goes through the same path.
"""

from __future__ import annotations

from alembic import context

from app.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is run by hand
    raise RuntimeError("run migrations through `syncgate migrate`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
