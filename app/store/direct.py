"""The hot statements on SQLite, run straight on the driver.

SQLAlchemy's execution path (cache key, execution context, parameter processing, result
metadata, row objects) costs about twice what SQLite takes to run the statements of the
hot paths (docs/benchmarks.md, "Profile at 33f2e67"). A statement registered with
``hot`` is compiled once per shape by SQLAlchemy itself, with the dialect's own type
processors for parameters and result columns, and then run on the ``sqlite3``
connection directly: the same SQL, the same values, the same transaction. Anything this
module cannot reproduce exactly (a default computed by SQL, a bind computed by a
callable, duplicate result names) is left to SQLAlchemy: ``Direct.run`` answers None.

PostgreSQL is untouched: asyncpg's path is the driver's own.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect

log = logging.getLogger("syncgate.store")

#: The ids of the statements registered with ``hot`` (module-level constants: they live
#: as long as the process, so an id is never reused by another statement).
_HOT: set[int] = set()

_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


def hot(statement: Any) -> Any:
    """Mark ``statement`` (built once, at import) to run straight on SQLite's driver."""
    _HOT.add(id(statement))
    return statement


class Direct:
    """The prepared forms of the hot statements for one SQLite engine's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[tuple[int, tuple[str, ...], bool], Prepared | None] = {}

    def run(self, raw: sqlite3.Connection, statement: Any, params: Any) -> DirectResult | None:
        """Run ``statement`` on ``raw``, or answer None when it is not a hot statement or
        its shape is one SQLAlchemy must run."""
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
        return prepared.run(raw, rows)

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


class Prepared:
    """One statement compiled for one set of parameter names: its SQL, how each
    positional value is found and processed, and how result rows are built."""

    __slots__ = ("_binds", "_expanding", "_many", "_processors", "_row", "_segments", "_sql")

    def __init__(
        self,
        sql: str,
        # (parameter name or None, constant, processor, flag): a named parameter, its
        # flag set when it is an expanding list; or (None, value, None, False), a constant
        # already processed; or (None, column default, processor, True), a default
        # computed for each row
        binds: list[tuple[str | None, Any, Callable[[Any], Any] | None, bool]],
        many: bool,
        row: type | None,
        processors: list[tuple[int, Callable[[Any], Any]]],
    ) -> None:
        self._sql = sql
        self._binds = binds
        self._many = many
        self._row = row
        self._processors = processors
        self._expanding = any(name is not None and expanding for name, _, _, expanding in binds)
        # the SQL around each expanding parameter's list, when there is one
        self._segments = _POSTCOMPILE.split(sql)[::2] if self._expanding else []

    @classmethod
    def of(
        cls, statement: Any, dialect: Dialect, params: dict[str, Any], many: bool
    ) -> Prepared | None:
        compiled: Any = statement.compile(
            dialect=dialect, column_keys=sorted(params), for_executemany=many
        )
        if compiled.positiontup is None:
            return None
        defaults: dict[str, Any] = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default
            if default is None or not (default.is_scalar or default.is_callable):
                return None
            # a callable default is wrapped by SQLAlchemy to take the execution context;
            # the ones this schema has (sqlmodel's default_factory) ignore it
            defaults[column.key] = default
        binds: list[tuple[str | None, Any, Callable[[Any], Any] | None, bool]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            processor = bind.type._cached_bind_processor(dialect)
            if name in params:
                binds.append((name, None, processor, bool(bind.expanding)))
            elif name in defaults:
                default = defaults[name]
                if default.is_scalar:
                    value = default.arg
                    binds.append((None, processor(value) if processor else value, None, False))
                else:
                    binds.append((None, default, processor, True))  # computed per row
            elif bind.callable is not None or bind.expanding:
                return None
            elif bind.required:
                binds.append((name, None, processor, False))  # KeyError when missing
            else:
                value = bind.value
                binds.append((None, processor(value) if processor else value, None, False))
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
                processor = c.type._cached_result_processor(dialect, None)
                if processor is not None:
                    processors.append((i, processor))
        return cls(compiled.string, binds, many, row, processors)

    def _values(self, params: dict[str, Any]) -> tuple[str, list[Any]]:
        values: list[Any] = []
        sql = self._sql
        if self._expanding:
            pieces = [self._segments[0]]
            segment = 1
        for name, constant, processor, expanding in self._binds:
            if name is None:
                if expanding:  # here: a callable default, computed per row
                    value = constant.arg(None)
                    values.append(processor(value) if processor else value)
                else:
                    values.append(constant)
                continue
            value = params[name]
            if expanding:
                items = [processor(v) for v in value] if processor else list(value)
                values.extend(items)
                pieces.append(", ".join("?" * len(items)))
                pieces.append(self._segments[segment])
                segment += 1
            else:
                values.append(processor(value) if processor else value)
        if self._expanding:
            sql = "".join(pieces)
        return sql, values

    def run(self, raw: sqlite3.Connection, rows: list[dict[str, Any]]) -> DirectResult:
        sql = self._sql
        values: Any = None
        try:
            if self._many and self._row is None and not self._expanding:
                values = [self._values(p)[1] for p in rows]
                cursor = raw.executemany(sql, values)
                return DirectResult((), cursor.rowcount, False)
            fetched: list[Any] = []
            count = 0
            for p in rows:
                sql, values = self._values(p)
                cursor = raw.execute(sql, values)
                if self._row is not None:
                    fetched.extend(cursor.fetchall())
                count += max(cursor.rowcount, 0)
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                sql, values, error, sqlite3.Error, ismulti=self._many
            ) from error
        return DirectResult(self._build(fetched), count, self._row is not None)

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


def _mapping(row: Any) -> dict[str, Any]:
    return dict(zip(row._fields, row, strict=True))


class DirectResult:
    """The part of SQLAlchemy's ``CursorResult`` the store uses, over rows already
    fetched."""

    __slots__ = ("_rows", "returns_rows", "rowcount")

    def __init__(self, rows: Sequence[Any], rowcount: int, returns_rows: bool) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.returns_rows = returns_rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> _Scalars:
        return _Scalars([r[0] for r in self._rows])


class _Scalars(list[Any]):
    def all(self) -> list[Any]:
        return list(self)
