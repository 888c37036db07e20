"""A transaction's connection and how statements run on it (SQLite in process, PostgreSQL
through asyncpg; the hot statements of both straight on the driver)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable

from app import tables as t
from app.store.direct import Direct, DirectResult, Prepared


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
        #: the driver's connection (SQLite's), or SQLAlchemy's adapter of it (asyncpg's)
        self._raw: Any = None
        #: ``Store.tx(one_statement=True)``: a second statement raises
        self._one_statement = one_statement
        self._ran = False

    async def _run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run one statement: directly on SQLite's in-process connection, awaited on an
        asyncio driver's; a hot statement straight on the driver (``app/store/direct.py``)."""
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
        if self._direct is not None:
            found = self._direct.find(statement, params)
            if found is not None:
                return await self._run_direct(*found)  # type: ignore[return-value]
        return await self.conn.execute(statement, params)

    async def _run_direct(self, prepared: Prepared, rows: list[dict[str, Any]]) -> DirectResult:
        """A hot statement on asyncpg. On an error that means the connection is gone, the
        connection and the pool's older ones are invalidated, as SQLAlchemy does on its
        own path: the pool then opens new ones instead of handing these out again."""
        assert isinstance(self.conn, AsyncConnection)
        if self._raw is None:
            self._raw = (await self.conn.get_raw_connection()).dbapi_connection
        try:
            return await prepared.run_asyncpg(self._raw, rows)
        except sa_exc.DBAPIError as error:
            sync = self.conn.sync_connection
            if (
                sync is not None
                and not sync.invalidated
                and self.conn.dialect.is_disconnect(error.orig, self._raw, None)  # type: ignore[arg-type]
            ):
                error.connection_invalidated = True
                sync.engine.pool._invalidate(sync.connection, error.orig)
                await self.conn.invalidate(error.orig)
            raise

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
