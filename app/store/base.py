"""A transaction's connection and how statements run on it (SQLite in process, PostgreSQL
through asyncpg)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable

from app import tables as t
from app.store.direct import Direct


class TxBase:
    """One database transaction: a connection, and how to run a statement on it."""

    def __init__(
        self,
        conn: AsyncConnection | Connection,
        dialect: str,
        direct: Direct | None = None,
        *,
        one_statement: bool = False,
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self._direct = direct
        self._raw: Any = None
        #: ``Store.tx(one_statement=True)``: a second statement raises
        self._one_statement = one_statement
        self._ran = False

    async def _run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run one statement: directly on SQLite's in-process connection (a hot statement
        straight on its driver, ``app/store/direct.py``), awaited on an asyncio driver's."""
        if self._one_statement:
            if self._ran:
                raise RuntimeError("a second statement in a transaction of one statement")
            self._ran = True
        if isinstance(self.conn, Connection):
            if self._direct is not None:
                if self._raw is None:
                    self._raw = self.conn.connection.driver_connection
                result = self._direct.run(self._raw, statement, params)
                if result is not None:
                    return result  # type: ignore[return-value]
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
