"""The hot statements, run straight on the driver (SQLite's ``sqlite3``, PostgreSQL's
asyncpg).

SQLAlchemy's execution path (cache key, execution context, parameter processing, result
metadata, row objects) costs about twice what SQLite takes to run the statements of the
hot paths (docs/benchmarks.md, "Profile at 33f2e67"), and on PostgreSQL about 100 us a
statement on top of asyncpg's own work ("The gateway on PostgreSQL"). A statement
registered with ``hot`` is compiled once per shape by SQLAlchemy itself, with the
dialect's own type processors for parameters and result columns, and then run on the
driver's connection directly: the same SQL, the same values, the same transaction.
Anything this module cannot reproduce exactly (a default computed by SQL, a bind
computed by a callable, duplicate result names; on PostgreSQL, an expanding list or a
``RETURNING`` over many rows, which SQLAlchemy batches into one statement) is left to
SQLAlchemy: ``Direct.find`` answers None.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Dialect

log = logging.getLogger("syncgate.store")

#: The ids of the statements registered with ``hot`` (module-level constants: they live
#: as long as the process, so an id is never reused by another statement).
_HOT: set[int] = set()

_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


def hot(statement: Any) -> Any:
    """Mark ``statement`` (built once, at import) to run straight on the driver."""
    _HOT.add(id(statement))
    return statement


class Direct:
    """The prepared forms of the hot statements for one engine's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[tuple[int, tuple[str, ...], bool], Prepared | None] = {}

    @classmethod
    def of(cls, dialect: Dialect) -> Direct | None:
        """The driver path for ``dialect``; None on PostgreSQL when SQLAlchemy's asyncpg
        adapter lacks a part ``Prepared.run_asyncpg`` drives (a newer SQLAlchemy): then
        every statement runs through SQLAlchemy, and the log says why."""
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import asyncpg

            adapter = getattr(asyncpg, "AsyncAdapt_asyncpg_connection", None)
            if dialect.driver != "asyncpg" or not all(
                hasattr(adapter, name) for name in _ADAPTER_PARTS
            ):
                log.warning(
                    "the hot statements are left to SQLAlchemy: its asyncpg adapter lacks"
                    " what the driver path uses (a newer SQLAlchemy?)"
                )
                return None
        return cls(dialect)

    def run(self, raw: sqlite3.Connection, statement: Any, params: Any) -> DirectResult | None:
        """Run ``statement`` on SQLite's ``raw``, or answer None when it is not a hot
        statement or its shape is one SQLAlchemy must run."""
        found = self.find(statement, params)
        if found is None:
            return None
        prepared, rows = found
        return prepared.run(raw, rows)

    def find(self, statement: Any, params: Any) -> tuple[Prepared, list[dict[str, Any]]] | None:
        """``statement`` prepared for ``params`` (and them as a list of rows), or None
        when it is not a hot statement or its shape is one SQLAlchemy must run."""
        sid = id(statement)
        if sid not in _HOT:
            return None
        many = isinstance(params, list)
        if many:
            if not params:
                return None
            rows: list[dict[str, Any]] = params
        else:
            rows = [params or {}]
        key = (sid, tuple(rows[0]), many)
        try:
            prepared = self._prepared[key]
        except KeyError:
            prepared = self._prepared[key] = self._prepare(statement, rows[0], many)
        if prepared is None:
            return None
        return prepared, rows

    def _prepare(self, statement: Any, params: dict[str, Any], many: bool) -> Prepared | None:
        try:
            return Prepared.of(statement, self.dialect, params, many)
        except Exception:  # an SQLAlchemy whose internals moved: its own path, as before
            log.warning(
                "a hot statement is left to SQLAlchemy: it could not be prepared for the "
                "driver (a newer SQLAlchemy?)",
                exc_info=True,
            )
            return None


#: Where a positional value comes from: a parameter; a parameter that is a list (an
#: expanding ``IN``); a constant, processed already; a column default computed per row.
PARAM, LIST, CONSTANT, DEFAULT = range(4)

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one set of parameter names: its SQL, how each
    positional value is found and processed, and how result rows are built."""

    __slots__ = ("_binds", "_lists", "_many", "_processors", "_row", "_segments", "_sql")

    def __init__(
        self,
        sql: str,
        binds: list[tuple[int, Any, Processor]],
        many: bool,
        row: type | None,
        processors: list[tuple[int, Callable[[Any], Any]]],
    ) -> None:
        self._sql = sql
        # (kind, parameter name / constant / column default, processor) per position
        self._binds = binds
        self._many = many
        self._row = row
        self._processors = processors
        self._lists = any(kind == LIST for kind, _, _ in binds)
        # the SQL around each list's placeholder, when there is one
        self._segments = _POSTCOMPILE.split(sql)[::2] if self._lists else []

    @classmethod
    def of(
        cls, statement: Any, dialect: Dialect, params: dict[str, Any], many: bool
    ) -> Prepared | None:
        compiled: Any = statement.compile(
            dialect=dialect, column_keys=sorted(params), for_executemany=many
        )
        if compiled.positiontup is None:
            return None
        if dialect.name == "postgresql" and (
            (many and compiled._result_columns)
            or any(compiled.binds[name].expanding for name in compiled.positiontup)
        ):
            # SQLAlchemy runs these as one statement (insertmanyvalues) or expands the
            # list into the text; asyncpg has neither
            return None
        defaults: dict[str, Any] = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default
            if default is None or not (default.is_scalar or default.is_callable):
                return None
            # a callable default is wrapped by SQLAlchemy to take the execution context;
            # the ones this schema has (sqlmodel's default_factory) ignore it
            defaults[column.key] = default
        binds: list[tuple[int, Any, Processor]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            processor = _faster(bind.type, dialect, bind.type._cached_bind_processor(dialect))
            if name in params:
                binds.append((LIST if bind.expanding else PARAM, name, processor))
            elif name in defaults:
                default = defaults[name]
                if default.is_callable:
                    binds.append((DEFAULT, default, processor))
                else:
                    value = default.arg
                    binds.append((CONSTANT, processor(value) if processor else value, None))
            elif bind.callable is not None or bind.expanding:
                return None  # a value computed by a callable, or a list nobody gave
            elif bind.required:
                binds.append((PARAM, name, processor))  # KeyError when it is missing
            else:
                value = bind.value
                binds.append((CONSTANT, processor(value) if processor else value, None))
        columns = compiled._result_columns
        row: type | None = None
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        if columns:
            names = [c.keyname for c in columns]
            try:
                base = namedtuple("Row", names)  # type: ignore[misc]
            except ValueError:  # duplicate or unusable names: SQLAlchemy's rows
                return None
            row = type("Row", (base,), {"__slots__": (), "_mapping": property(_mapping)})
            for i, c in enumerate(columns):
                result_processor = c.type._cached_result_processor(dialect, None)
                if result_processor is not None:
                    processors.append((i, result_processor))
        return cls(compiled.string, binds, many, row, processors)

    def _values(self, params: dict[str, Any]) -> list[Any]:
        """The positional values for one row of parameters (lists spread out)."""
        values: list[Any] = []
        for kind, what, processor in self._binds:
            if kind == CONSTANT:
                values.append(what)
                continue
            if kind == LIST:
                items = params[what]
                values.extend([processor(v) for v in items] if processor else items)
                continue
            value = params[what] if kind == PARAM else what.arg(None)
            values.append(processor(value) if processor else value)
        return values

    def _sql_for(self, params: dict[str, Any]) -> str:
        """The SQL for one row of parameters: a placeholder per item of each list."""
        if not self._lists:
            return self._sql
        segments = iter(self._segments)
        pieces = [next(segments)]
        for kind, what, _ in self._binds:
            if kind == LIST:
                pieces.append(", ".join("?" * len(params[what])))
                pieces.append(next(segments))
        return "".join(pieces)

    def run(self, raw: sqlite3.Connection, rows: list[dict[str, Any]]) -> DirectResult:
        sql = self._sql
        values: Any = None
        try:
            if self._many and self._row is None and not self._lists:
                values = [self._values(p) for p in rows]
                cursor = raw.executemany(sql, values)
                return DirectResult((), cursor.rowcount, False)
            fetched: list[Any] = []
            count = 0
            for p in rows:
                sql, values = self._sql_for(p), self._values(p)
                cursor = raw.execute(sql, values)
                if self._row is not None:
                    fetched.extend(cursor.fetchall())
                count += max(cursor.rowcount, 0)
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                sql, values, error, sqlite3.Error, ismulti=self._many
            ) from error
        return DirectResult(self._build(fetched), count, self._row is not None)

    async def run_asyncpg(self, adapted: Any, rows: list[dict[str, Any]]) -> DirectResult:
        """Run on ``adapted``, SQLAlchemy's adapter of an asyncpg connection, as its
        cursor does: in the transaction it begins on the first statement (begun here when
        this is the first), its errors translated to the DBAPI's and then SQLAlchemy's
        (an ``IntegrityError`` is one, as through SQLAlchemy)."""
        conn = adapted._connection
        sql = self._sql
        values: Any = None
        try:
            async with adapted._execute_mutex:
                if adapted._transaction is None:  # not in autocommit mode: BEGIN
                    await adapted._start_transaction()
                if len(rows) > 1:  # one row is one statement, as SQLAlchemy runs it
                    values = [self._values(p) for p in rows]
                    await conn.executemany(sql, values)
                    return DirectResult((), -1, False)  # asyncpg counts no rows here
                values = self._values(rows[0])
                if self._row is not None:
                    fetched = await conn.fetch(sql, *values)
                    return DirectResult(self._build(fetched), len(fetched), True)
                status = await conn.execute(sql, *values)
        except Exception as error:
            raise _translated(adapted, sql, values, error, many=self._many) from error
        counted = _STATUS_COUNT.match(status or "")
        return DirectResult((), int(counted[1]) if counted else -1, False)

    def _build(self, fetched: list[Any]) -> Sequence[Any]:
        if self._row is None:
            return ()
        make = self._row._make  # type: ignore[attr-defined]
        if not self._processors:
            return [make(r) for r in fetched]
        out = []
        processors = self._processors
        for r in fetched:
            values = list(r)
            for i, processor in processors:
                values[i] = processor(values[i])
            out.append(make(values))
        return out


#: SQLAlchemy's SQLite DATETIME text, which a ``datetime``'s ISO form with a space and
#: microseconds spells the same in its first 26 characters (year to microsecond, the
#: year padded to four digits; the time zone, which SQLAlchemy leaves out, after them)
_DATETIME_TEXT = SQLITE_DATETIME()._storage_format  # type: ignore[no-untyped-call]
_DATETIME_CHARS = len("2026-12-05 03:31:02.000000")


def _faster(type_: Any, dialect: Dialect, processor: Processor) -> Processor:
    """``processor``, or one that writes the same value faster: SQLAlchemy's SQLite
    DATETIME builds its text with a dict and ``%`` formatting, about 2 % of the gateway's
    CPU per change; ``datetime.isoformat`` is C. Anything not a plain ``datetime`` (None,
    a date, a subclass) goes to SQLAlchemy's processor."""
    if processor is None:
        return None
    impl = type_.dialect_impl(dialect)
    if not isinstance(impl, SQLITE_DATETIME) or impl._storage_format != _DATETIME_TEXT:
        return processor
    sqlalchemys = processor
    chars = _DATETIME_CHARS

    def datetime_text(value: Any) -> Any:
        if type(value) is datetime:
            return value.isoformat(" ", "microseconds")[:chars]
        return sqlalchemys(value)

    return datetime_text


#: What ``Prepared.run_asyncpg`` uses of SQLAlchemy's asyncpg adapter
_ADAPTER_PARTS = (
    "_connection",
    "_execute_mutex",
    "_transaction",
    "_start_transaction",
    "_handle_exception",
    "dbapi",
)

#: The rows a command touched, from its status (as SQLAlchemy's asyncpg cursor reads it)
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


def _translated(adapted: Any, sql: str, values: Any, error: Exception, *, many: bool) -> Exception:
    """``error`` from asyncpg as SQLAlchemy would raise it: the adapter's translation
    to its DBAPI's error (which also forgets a transaction its closed connection lost),
    then SQLAlchemy's wrapper of that (``sqlalchemy.exc.IntegrityError`` and the like).
    An error that is not the database's the adapter raises as it is."""
    dbapi = adapted.dbapi
    try:
        adapted._handle_exception(error)
    except dbapi.Error as translated:
        wrapped: Exception = sa_exc.DBAPIError.instance(
            sql, values, translated, dbapi.Error, ismulti=many
        )
        return wrapped
    return error  # the adapter always raises


def _mapping(row: Any) -> dict[str, Any]:
    return dict(zip(row._fields, row, strict=True))


class DirectResult:
    """What the store uses of SQLAlchemy's ``CursorResult`` for the hot statements (it
    iterates their rows), over rows already fetched."""

    __slots__ = ("_rows", "returns_rows", "rowcount")

    def __init__(self, rows: Sequence[Any], rowcount: int, returns_rows: bool) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.returns_rows = returns_rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)
