"""Direct access to the gateway's database for the harness: queue depth, the link table
of the benchmark's work items, and bulk loading of filler rows for the scale figures
(``executemany`` on SQLite, ``COPY`` on PostgreSQL), and new empty PostgreSQL
databases. Never used while measuring a request path: only to observe and to prepare."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

SYSTEMS4 = ("hookstream", "devhelm", "inboxops", "incidentio")


async def fresh_pg_database(url: str, name: str) -> str:
    """A new, empty PostgreSQL database ``name`` beside the one ``url`` names (dropped
    first if it exists, sessions and all); returns ``url`` pointing at it. Used by the
    harness for its installations and by the test suite for each pytest-xdist worker."""
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return u.set(database=name).render_as_string(hide_password=False)


def _sqlite_ts(dt: datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format
    return dt.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class DB:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.sqlite = parsed.drivername.startswith("sqlite")
        self.path = parsed.database if self.sqlite else None
        self._pg: Any = None

    async def _pg_conn(self) -> Any:
        if self._pg is None:
            import asyncpg

            u = make_url(self.url)
            self._pg = await asyncpg.connect(
                host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
            )
        return self._pg

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None

    def _sq(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite:
            return await asyncio.to_thread(self._sq, sql)
        conn = await self._pg_conn()
        return [tuple(r) for r in await conn.fetch(sql)]

    async def depth(self) -> tuple[int, int]:
        """(dirty links not dead, pending inbox events)."""
        # spelled as the gateway's partial index ix_links_pending is (SQLite matches the
        # terms literally): otherwise every sample scans the whole links table
        live = "dirty IS 1 AND dead IS 0" if self.sqlite else "dirty IS TRUE AND dead IS FALSE"
        dirty = await self.fetch(f"SELECT count(*) FROM links WHERE {live}")
        pending = await self.fetch("SELECT count(*) FROM events WHERE state = 'pending'")
        return int(dirty[0][0]), int(pending[0][0])

    async def dead(self) -> int:
        dead = "dead IS 1" if self.sqlite else "dead IS TRUE"
        return int((await self.fetch(f"SELECT count(*) FROM links WHERE {dead}"))[0][0])

    async def bench_links(self) -> list[tuple[str, str, str | None]]:
        """(work_item_id, system, external_id) of every non-filler link."""
        return [
            (r[0], r[1], r[2])
            for r in await self.fetch(
                "SELECT work_item_id, system, external_id FROM links "
                "WHERE work_item_id NOT LIKE 'z%'"
            )
        ]

    # -- filler ----------------------------------------------------------------------------

    async def load_filler(self, items: int, links_per_item: int = 4, batch: int = 50_000) -> float:
        """Bulk-insert ``items`` work items with ``links_per_item`` clean links each (ids
        start with 'z', never a hex digit, so the harness can tell them apart). Returns
        seconds taken."""
        import time

        start = time.perf_counter()
        if self.sqlite:
            await asyncio.to_thread(self._load_sqlite, items, links_per_item, batch)
        else:
            await self._load_pg(items, links_per_item, batch)
        return time.perf_counter() - start

    @staticmethod
    def _rows(items: int, links_per_item: int, batch: int) -> Iterator[tuple[list[Any], list[Any]]]:
        now = datetime.now(UTC)
        stamps = {"status": {"system": "hookstream", "at": now.isoformat()}}
        for lo in range(0, items, batch):
            item_rows = []
            link_rows = []
            for i in range(lo, min(items, lo + batch)):
                item_id = "z" + uuid.UUID(int=i).hex[1:]
                title = f"filler issue {i}"
                item_rows.append((item_id, title, "timeout on delivery", stamps, now))
                for s in SYSTEMS4[:links_per_item]:
                    ext = f"filler-{s}-{i}"
                    known = {
                        "ref": {"system": s, "scope": "", "external_id": ext},
                        "updated_at": now.isoformat(),
                        "fields": {"title": title, "status": "open", "priority": "normal"},
                        "native": {"status": "open"},
                        "unmapped": {},
                        "raw": {},
                    }
                    link_rows.append((item_id, s, ext, known, now))
            yield item_rows, link_rows

    def _load_sqlite(self, items: int, links_per_item: int, batch: int) -> None:
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=OFF")
            for item_rows, link_rows in self._rows(items, links_per_item, batch):
                con.executemany(
                    "INSERT INTO work_items (id, title, description, status, priority, labels,"
                    " stamps, version, created_at, updated_at)"
                    " VALUES (?, ?, ?, 'open', 'normal', '[]', ?, 1, ?, ?)",
                    [
                        (i, t, d, json.dumps(st), _sqlite_ts(n), _sqlite_ts(n))
                        for i, t, d, st, n in item_rows
                    ],
                )
                con.executemany(
                    "INSERT INTO links (work_item_id, system, scope, external_id, known_state,"
                    " vendor_updated_at, last_synced_at, dirty, dirty_version, synced_version,"
                    " attempts, dead, created_at)"
                    " VALUES (?, ?, '', ?, ?, ?, ?, 0, 0, 1, 0, 0, ?)",
                    [
                        (w, s, e, json.dumps(k), _sqlite_ts(n), _sqlite_ts(n), _sqlite_ts(n))
                        for w, s, e, k, n in link_rows
                    ],
                )
                con.commit()
            # No ANALYZE: the gateway never runs it, so a database that grew in service
            # has no planner statistics either (with them, SQLite would pick skip-scans
            # that hide a missing index; see docs/benchmarks.md).
        finally:
            con.close()

    async def _load_pg(self, items: int, links_per_item: int, batch: int) -> None:
        conn = await self._pg_conn()
        for item_rows, link_rows in self._rows(items, links_per_item, batch):
            await conn.copy_records_to_table(
                "work_items",
                columns=[
                    "id",
                    "title",
                    "description",
                    "status",
                    "priority",
                    "labels",
                    "stamps",
                    "version",
                    "created_at",
                    "updated_at",
                ],
                records=[
                    (i, t, d, "open", "normal", "[]", json.dumps(st), 1, n, n)
                    for i, t, d, st, n in item_rows
                ],
            )
            await conn.copy_records_to_table(
                "links",
                columns=[
                    "work_item_id",
                    "system",
                    "scope",
                    "external_id",
                    "known_state",
                    "vendor_updated_at",
                    "last_synced_at",
                    "dirty",
                    "dirty_version",
                    "synced_version",
                    "attempts",
                    "dead",
                    "created_at",
                ],
                records=[
                    (w, s, "", e, json.dumps(k), n, n, False, 0, 1, 0, False, n)
                    for w, s, e, k, n in link_rows
                ],
            )
        await conn.execute("ANALYZE")  # autovacuum would do it in service
