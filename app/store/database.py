"""The database: one ``Store`` per gateway, SQLite in process (WAL, its checkpoints in a
thread of their own) or PostgreSQL through a pool; transactions and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from app.config.secrets import POSTGRESQL_DRIVERS, SQLITE_DRIVERS
from app.model import utcnow
from app.store.direct import Direct
from app.store.records import NewEvent
from app.store.tx import Tx

log = logging.getLogger("syncgate.store")

T = TypeVar("T")

#: The PostgreSQL errors that end a transaction through no fault of its own: run again,
#: it succeeds (SQLSTATE -> what it is called in the logs).
TRANSIENT_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}


def transient(exc: BaseException) -> str | None:
    """What kind of transient failure ``exc`` is (a deadlock, a serialization failure),
    or None when running the transaction again would not help."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "orig", None)):
            code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
            if isinstance(code, str) and code in TRANSIENT_SQLSTATES:
                return TRANSIENT_SQLSTATES[code]
        current = current.__cause__
    return None


def failure_reason(exc: BaseException) -> str | None:
    """Why a database could not be used, in one line, when ``exc`` says the database is
    at fault (refused, unreachable, no such file, a wrong password, a schema this
    version does not know); None for anything else."""
    from alembic.util.exc import CommandError
    from asyncpg import InterfaceError, PostgresError  # type: ignore[import-untyped]

    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    elif not isinstance(
        exc, OSError | sa_exc.SQLAlchemyError | CommandError | PostgresError | InterfaceError
    ):
        return None
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)  # asyncio's strerror names the address instead
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # a name that does not resolve
    text = str(exc).strip()
    unknown = re.match(r"Can't locate revision identified by '([^']*)'", text)
    if isinstance(exc, CommandError) and unknown is not None:
        return (
            f"its schema is at revision {unknown[1]!r}, newer than this Syncgate knows"
            f" (up to {newest_revision()!r}): a newer Syncgate migrated it; run that"
            " version, or restore the backup taken before the upgrade"
        )
    return text.splitlines()[0] if text else type(exc).__name__


#: Where alembic finds the migrations (``app/migrations``).
MIGRATIONS = str(Path(__file__).resolve().parents[1] / "migrations")


def newest_revision() -> str:
    """The newest schema revision this version's migrations bring a database to."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return str(ScriptDirectory.from_config(config).get_current_head())


def normalize_url(url: str) -> str:
    """Pick the driver: ``sqlite:`` -> the in-process sqlite3 module (``sqlite+aiosqlite:``
    is accepted as a spelling of the same), ``postgresql:`` -> asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in SQLITE_DRIVERS:
        parsed = parsed.set(drivername="sqlite+pysqlite")
    elif parsed.drivername in POSTGRESQL_DRIVERS:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


#: JSON columns are encoded and decoded by msgspec (several times faster than json).
_JSON_CODEC: dict[str, Any] = {
    "json_serializer": _json_dumps,
    "json_deserializer": msgspec.json.decode,
}


#: The size of SQLite's write-ahead log past which it is started over, by default (the
#: ``sqlite_wal_limit_mb`` setting); a frame is a page.
WAL_LIMIT_MB = 64.0
#: SQLite's default page, the one the gateway's databases are made with.
SQLITE_PAGE_BYTES = 4096
#: A pooled PostgreSQL connection unused for longer than this (seconds) is checked before
#: a transaction takes it (``ping_idle``).
PING_IDLE_S = 1.0
#: Where a pooled connection keeps when it was last given back (``ping_idle``).
_RETURNED_AT = "syncgate_returned_at"


def ping_idle(engine: AsyncEngine, idle_s: float) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for the connections a transaction takes after they
    sat unused in the pool for more than ``idle_s`` seconds.

    A connection that sat idle may have been closed under the pool (a server restart, a
    firewall's idle timeout); the check finds that out, and the pool then replaces every
    connection it holds, so the transaction never sees it. pre_ping checks every
    connection taken, and asyncpg's check is a transaction of its own (BEGIN, an empty
    query, ROLLBACK: three round trips, 0.27 ms of CPU on the benchmark's VM, half of what
    a small transaction costs). Under load a connection is back in use within
    milliseconds, and one lost while in use fails the transaction that holds it whether
    it was checked or not; the pool is replaced then too (SQLAlchemy's disconnect
    handling), and the work is retried as any failed transaction's is."""
    pool = engine.sync_engine.pool
    failures = (engine.dialect.loaded_dbapi.Error, OSError)

    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get(_RETURNED_AT, 0.0) <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except failures as exc:
            raise sa_exc.InvalidatePoolError(f"a pooled connection is gone: {exc}") from exc

    sa_event.listen(pool, "connect", returned)
    sa_event.listen(pool, "checkin", returned)
    sa_event.listen(pool, "checkout", check)


class Store:
    """The database: connections, transactions and migrations.

    SQLite runs in this process on one connection, driven directly from the event loop:
    its statements take microseconds (WAL, ``synchronous=NORMAL``), far less than a
    thread hop per statement would cost, and an asyncio lock makes transactions take
    turns, which SQLite's single writer requires anyway. PostgreSQL goes through
    asyncpg and a connection pool.
    """

    def __init__(self, engine: AsyncEngine | Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._turn = asyncio.Lock()
        self._checkpointer: WalCheckpointer | None = None
        #: The hot statements, run straight on the driver (``app/store/direct.py``)
        self._direct = Direct.of(engine.dialect)
        #: SQLite's one connection, kept open between transactions (``tx``)
        self._conn: sa.Connection | None = None
        #: PostgreSQL's pool in autocommit mode, for transactions of one statement
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if isinstance(engine, AsyncEngine)
            else None
        )
        #: Transactions committed through ``tx`` (``syncgate_db_transactions_total``).
        self.committed = 0

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        wal_limit_mb: float = WAL_LIMIT_MB,
        ping_idle_s: float = PING_IDLE_S,
    ) -> Store:
        """A store on ``url``. On SQLite, ``wal_limit_mb`` is the size past which the
        write-ahead log is emptied (``WalCheckpointer``); PostgreSQL uses ``pool_size``
        connections (and as many again at peaks), each checked before use when it sat
        in the pool for more than ``ping_idle_s`` seconds (``ping_idle``)."""
        url = normalize_url(url)
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite"):
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=StaticPool, **_JSON_CODEC)
            sa_event.listen(engine, "connect", _sqlite_on_connect)
            sa_event.listen(engine, "begin", _sqlite_on_begin)
            store = cls(engine)
            if parsed.database and parsed.database != ":memory:":
                frames = max(1, int(wal_limit_mb * 1024 * 1024) // SQLITE_PAGE_BYTES)
                store._checkpointer = WalCheckpointer(parsed.database, limit_frames=frames)
            return store
        pooled = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, **_JSON_CODEC
        )
        ping_idle(pooled, ping_idle_s)
        return cls(pooled)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        if isinstance(self.engine, Engine):
            async with self._turn:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                self.engine.dispose()
        else:
            await self.engine.dispose()

    async def clock_offset(self, samples: int = 3) -> timedelta | None:
        """How far the database server's clock is ahead of this host's (PostgreSQL's
        ``clock_timestamp()`` against the middle of the round trip that read it, the
        shortest of ``samples``); None on SQLite, whose clock is this host's."""
        if not isinstance(self.engine, AsyncEngine):
            return None
        best: tuple[float, timedelta] | None = None
        async with self.engine.connect() as conn:
            for _ in range(samples):
                sent = time.time()
                server = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
                back = time.time()
                host = datetime.fromtimestamp((sent + back) / 2, UTC)
                if best is None or back - sent < best[0]:
                    best = (back - sent, server - host)
        assert best is not None
        return best[1]

    @contextlib.asynccontextmanager
    async def tx(self, *, one_statement: bool = False) -> AsyncIterator[Tx]:
        """A transaction: committed when the block ends, rolled back on an exception.

        ``one_statement``: the block runs exactly one statement, a transaction by itself.
        On PostgreSQL it then runs in autocommit mode: the server wraps the statement in
        its own transaction, so there is no BEGIN and no COMMIT to send, two round trips
        and about 200 us of this process's CPU less (a claim, a group commit of
        webhooks). The statement is committed as soon as it has run: nothing after it in
        the block can undo it, and a second statement raises (it would not be atomic
        with the first). On SQLite it is an ordinary transaction."""
        if one_statement and self._autocommit is not None:
            async with self._autocommit.connect() as aconn:
                yield Tx(aconn, self.dialect, self._direct, one_statement=True)
        elif isinstance(self.engine, Engine):
            async with self._turn:
                # one connection for every transaction: checking one out of the pool and
                # back costs more than most of SQLite's transactions take
                conn = self._conn
                if conn is None or conn.closed or conn.invalidated:
                    conn = self._conn = self.engine.connect()
                with conn.begin():
                    yield Tx(conn, self.dialect, self._direct, one_statement=one_statement)
                raw = conn.connection.driver_connection
                if self._checkpointer is not None and isinstance(raw, sqlite3.Connection):
                    self._checkpointer.restart_if_due(raw)
        else:
            async with self.engine.begin() as aconn:  # one_statement went to autocommit
                yield Tx(aconn, self.dialect, self._direct)
        self.committed += 1

    async def retrying(
        self, work: Callable[[], Awaitable[T]], *, what: str, attempts: int = 4
    ) -> T:
        """Run ``work`` (which opens its own transaction) again when it fails on a
        deadlock or a serialization failure, up to ``attempts`` times in all, after a
        short random pause; each retry is logged. Any other error, and the last
        transient one, is raised."""
        for attempt in range(1, attempts + 1):
            try:
                return await work()
            except Exception as exc:
                kind = transient(exc)
                if kind is None or attempt == attempts:
                    raise
                log.warning(
                    "%s: %s; running the transaction again",
                    what,
                    kind,
                    extra={"attempt": attempt},
                )
                # rivals that collided should not collide again at once
                await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration (alembic upgrade head), or to
        ``revision`` (a test building a database as an older version left it)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", MIGRATIONS)

        def upgrade(sync_conn: Any) -> None:
            config.attributes["connection"] = sync_conn
            command.upgrade(config, revision)

        if isinstance(self.engine, Engine):
            async with self._turn:
                with self.engine.begin() as conn:
                    upgrade(conn)
            return
        async with self.engine.begin() as aconn:
            # several processes may start at once: one migrates, the others wait
            await aconn.execute(sa.text("SELECT pg_advisory_xact_lock(7243190)"))
            await aconn.run_sync(upgrade)

    async def reach(self) -> None:
        """Open a connection and give it back: raises what connecting raises (a refused
        connection, a wrong password, a file that cannot be opened)."""
        if isinstance(self.engine, Engine):
            async with self._turn:
                self.engine.connect().close()
            return
        async with self.engine.connect():
            pass

    async def ping(self) -> bool:
        try:
            async with self.tx() as tx:
                await tx._run(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False
        return True

    async def can_store_event(self) -> bool:
        """Whether a webhook delivery could be stored now: a probe event is written as a
        delivery would be, in a transaction that is then rolled back (``/readyz``)."""
        probe = NewEvent(
            system="_readiness",
            delivery_id=uuid.uuid4().hex,
            source="webhook",
            event_type="readiness probe",
            body=b"{}",
        )
        try:
            async with self.tx() as tx:
                await tx.record_events([probe], now=utcnow())
                raise _RolledBack
        except _RolledBack:
            return True
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure as not ready
            log.warning("readiness: the database refuses writes: %s", type(exc).__name__)
            return False


class _RolledBack(Exception):
    """Ends the readiness probe's transaction without committing it."""


class WalCheckpointer:
    """Copies SQLite's write-ahead log back into the database file from a thread of its
    own, on its own connection, every ``every_s`` (a PASSIVE checkpoint never blocks the
    gateway's writes). Left to SQLite, a checkpoint runs inside whichever commit crosses
    the log's size limit, with an fsync, on the event loop: a stall of tens of
    milliseconds for every delivery waiting at that moment.

    A PASSIVE checkpoint copies the log back but never rewinds it: SQLite starts the log
    over only when a write begins while every frame is copied already, which under
    writes that never pause does not happen, and the log grew without bound (12 GB in
    25 minutes of the soak, for a 280 MB database). So once the log holds
    ``limit_frames`` frames, the store starts it over between two of its transactions
    (``restart_if_due``, a RESTART checkpoint on the gateway's own connection: from this
    thread it would wait for a moment without a write, which writes that never pause do
    not leave). That holds the next transaction back for milliseconds, since the PASSIVE
    checkpoints have copied nearly all of the log already.

    RESTART, not TRUNCATE: the next transaction writes the log from its start again,
    over blocks the file has already, and SQLite trims the file back to the limit
    (``journal_size_limit``). A commit that writes into a file's existing blocks costs
    less CPU than one that grows it (on ext4, 48 against 74 us a commit of 14 pages;
    the gateway's CPU per change 0.92-0.96 x, docs/benchmarks.md "Changes" 26), and the
    file on disk between two starts over is the limit, as before at its peak."""

    def __init__(
        self,
        path: str,
        every_s: float = 1.0,
        limit_frames: int = int(WAL_LIMIT_MB * 1024 * 1024) // SQLITE_PAGE_BYTES,
    ) -> None:
        self.path = path
        self.every_s = every_s
        self.limit_frames = limit_frames
        #: Set by the thread when the log is over ``limit_frames``.
        self.restart_due = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        while not self._stop.wait(self.every_s):
            try:
                if con is None:
                    con = sqlite3.connect(self.path, timeout=5.0, check_same_thread=True)
                _busy, frames, _copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= self.limit_frames:
                    self.restart_due = True
            except sqlite3.Error:
                log.warning("SQLite checkpoint failed; retrying", exc_info=True)
                if con is not None:
                    con.close()
                con = None
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a small log behind
            con.close()

    def restart_if_due(self, raw: sqlite3.Connection) -> None:
        """Start the log over when the thread found it over its size, on ``raw`` (the
        gateway's connection, between two transactions)."""
        if self.restart_due:
            raw.execute(f"PRAGMA journal_size_limit={self.limit_frames * SQLITE_PAGE_BYTES}")
            busy, _frames, _copied = raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            self.restart_due = bool(busy)  # busy: tried again after the next transaction

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of the driver's
    # deferred BEGIN, so a transaction takes the write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # checkpoints run in WalCheckpointer's thread, not in a commit on the event loop
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # straight to the driver: a statement through SQLAlchemy's execution path costs more
    # than SQLite takes to run it, once per transaction
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")
