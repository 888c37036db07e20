"""A transaction's connection and how statements run on it (SQLite in process, PostgreSQL
through asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable


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
