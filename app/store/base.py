"""A transaction's connection and how statements run on it (SQLite in process, PostgreSQL
through asyncpg)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable

from app import tables as t


class TxBase:
    """One database transaction: a connection, and how to run a statement on it."""

    def __init__(self, conn: AsyncConnection | Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    async def _run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run one statement: directly on SQLite's in-process connection, awaited on an
        asyncio driver's."""
        if isinstance(self.conn, Connection):
            return self.conn.execute(statement, params)
        return await self.conn.execute(statement, params)

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def link_system(self) -> Any:
        """``links.system`` for grouping and filtering the few dead or pending links. On
        SQLite it is spelled ``+links.system``: grouped or filtered by system, SQLite's
        planner otherwise walks every link of the system through
        ``ix_links_system_external`` (to skip a sort) instead of the few rows of the
        partial outbox indexes (seconds instead of milliseconds at 400,000 links)."""
        return t.links.c.system if self.postgres else sa.literal_column("+links.system")
