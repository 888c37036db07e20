"""Substring search on work items through an index (migration 0007): SQLite's FTS5
trigram table, PostgreSQL's pg_trgm GIN indexes. The results are exactly the plain scan's
(the predicate the store ran before the index: LIKE on SQLite, ILIKE on PostgreSQL), for
ASCII and non-ASCII text in any case, short and odd queries, and after items are
changed and deleted; and the index is what the query uses."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url

from app import tables as t
from app.errors import Invalid
from app.model import WorkItem, utcnow
from app.store import Store, unsearchable
from app.store import items as store_items
from app.store.tx import Tx
from tests.conftest import postgres_url

TEXTS = [
    ("Checkout returns 502", "customers see a blank page"),
    ("CHECKOUT slow", ""),
    ("checkout-api: timeouts", "since the deploy at 10:02"),
    ("Café menu broken", "the ÉCLAIR page"),
    ("CAFÉ MENU", "nothing"),
    ("Straße closed", "Grüße aus Köln"),
    ("Überweisung fehlgeschlagen", "ÜBERWEISUNG"),
    ("Ошибка оплаты", "ОШИБКА в платеже"),
    ("支付失败 payments", "用户无法支付"),
    ("100% of refunds_v2 failing", 'the "quoted" path a\\b'),
    ("refunds v2", "50 percent"),
    ("emoji 🚒 fire", "🔥🔥🔥"),
]

QUERIES = [
    "checkout",
    "CHECKOUT",
    "ChEcKoUt ReT",
    "café",
    "CAFÉ",
    "éclair",
    "ÉCLAIR",
    "straße",
    "STRASSE",
    "grüße",
    "GRÜSSE",
    "überweisung",
    "Überweisung",
    "ошибка",
    "Ошибка",
    "ОШИБКА",
    "支付失败",
    "无法支",
    "100%",
    "%",
    "refunds_v2",
    "_v2",
    '"quoted"',
    "a\\b",
    "🚒 fi",
    "🔥🔥",
    "ab",
    "po",
    "nothing at all here",
    "  ",
    "e",
]


async def _fill(store: Store) -> list[WorkItem]:
    start = utcnow() - timedelta(hours=1)
    items = [
        WorkItem(
            id=f"{n:032x}",
            title=title,
            description=description,
            created_at=start,
            updated_at=start + timedelta(seconds=n),
        )
        for n, (title, description) in enumerate(TEXTS)
    ]
    async with store.tx() as tx:
        await tx.insert_items(items[:6])
        for item in items[6:]:
            await tx.insert_item(item)
    return items


async def _scan(tx: Tx, text: str) -> list[str]:
    """The ids the plain scan finds (the predicate alone, no index: PostgreSQL is told
    not to use one), newest change first."""
    if tx.postgres:
        await tx._run(sa.text("SET LOCAL enable_bitmapscan = off"))
        await tx._run(sa.text("SET LOCAL enable_indexscan = off"))
    rows = await tx._run(
        sa.select(t.work_items.c.id)
        .where(tx._matches(text, t.work_items.c.title, t.work_items.c.description))
        .order_by(t.work_items.c.updated_at.desc(), t.work_items.c.id)
    )
    return [r.id for r in rows]


async def _same_as_the_scan(store: Store, queries: list[str]) -> dict[str, list[str]]:
    found = {}
    for query in queries:
        async with store.tx() as tx:
            indexed = [i.id for i in await tx.page_items(text=query, limit=100)]
            listed, total = await tx.search_items(text=query, limit=100)
        async with store.tx() as tx:
            scanned = await _scan(tx, query)
        assert indexed == scanned, (query, indexed, scanned)
        assert [i.id for i in listed] == scanned and total == len(scanned), query
        found[query] = indexed
    return found


@pytest.mark.parametrize("candidates", [2000, 2], ids=["rare", "common"])
async def test_search_finds_exactly_what_the_scan_finds(
    store: Store, db_kind: str, candidates: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With few candidates the index serves the search; with many (here: from two on),
    the ordered walk does: the same results either way."""
    monkeypatch.setattr(store_items, "SEARCH_CANDIDATES", candidates)
    items = await _fill(store)
    ids = [i.id for i in items]
    found = await _same_as_the_scan(store, QUERIES)
    # what the scan finds, spelled out for the queries whose answer both databases share
    assert set(found["checkout"]) == {ids[0], ids[1], ids[2]}
    assert found["ChEcKoUt ReT"] == [ids[0]]
    assert found["100%"] == [ids[9]] and found["refunds_v2"] == [ids[9]]
    assert found['"quoted"'] == [ids[9]] and found["a\\b"] == [ids[9]]
    assert found["支付失败"] == [ids[8]] and found["无法支"] == [ids[8]]
    assert found["🔥🔥"] == [ids[11]] and found["🚒 fi"] == [ids[11]]
    assert found["Überweisung"] == [ids[6]]
    assert found["nothing at all here"] == []
    if db_kind == "sqlite":
        # SQLite's LIKE folds ASCII letters only: the index (which folds all of Unicode)
        # must not add what LIKE leaves out
        assert found["café"] == [ids[3]] and found["CAFÉ"] == [ids[4]]
        assert found["ошибка"] == [] and found["überweisung"] == []


async def test_a_nul_is_refused_before_any_sql_on_either_database(store: Store) -> None:
    """PostgreSQL takes no NUL in a text parameter and SQLite's FTS5 ends a MATCH phrase
    at one ("unterminated string"): refused with a reason, on the index's path (three
    characters or more) and the scan's, by both kinds of search."""
    await _fill(store)
    for text in ("a\x00b", "a\x00", "\x00", "checkout\x00"):
        async with store.tx() as tx:
            with pytest.raises(Invalid, match="NUL"):
                await tx.page_items(text=text)
            with pytest.raises(Invalid, match="NUL"):
                await tx.search_items(text=text)
    assert unsearchable("a\x00b") and unsearchable('a"b""\x01\t') is None


async def test_search_follows_changes_and_deletes(store: Store) -> None:
    items = await _fill(store)
    changed = items[0]
    changed.title = "Login loops forever"
    changed.description = "Ünïcödé everywhere"
    changed.version += 1
    async with store.tx() as tx:
        await tx.save_items([changed])
        await tx._run(sa.delete(t.work_items).where(t.work_items.c.id == items[1].id))
    found = await _same_as_the_scan(store, ["checkout", "login loops", "nïcödé e", "ÜNÏCÖDÉ"])
    assert found["checkout"] == [items[2].id]
    assert found["login loops"] == [changed.id]
    assert found["nïcödé e"] == [changed.id]


async def test_the_search_uses_the_index(store: Store) -> None:
    """SQLite plans the search through the FTS5 table; PostgreSQL, once told a scan is
    expensive (its planner chooses by statistics, and a dozen rows fit one page), through
    the trigram indexes; both exist after the migrations."""
    await _fill(store)
    async with store.tx() as tx:
        conn: Any = tx.conn
        if tx.postgres:
            indexes = await tx._run(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'work_items'")
            )
            assert {"ix_work_items_title_trgm", "ix_work_items_description_trgm"} <= {
                r.indexname for r in indexes
            }
            await tx._run(sa.text("SET LOCAL enable_seqscan = off"))
            query = sa.select(t.work_items.c.id).where(*await tx._text_filter("checkout"))
            # planned for each text (a prepared statement's generic plan would walk all)
            mode = await tx._run(sa.text("SHOW plan_cache_mode"))
            assert mode.scalar_one() == "force_custom_plan"
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = " ".join(r[0] for r in await tx._run(sa.text(f"EXPLAIN {compiled}")))
            assert "ix_work_items_title_trgm" in plan, plan
            return
        assert isinstance(conn, Connection)
        where = await tx._text_filter("checkout")
        assert len(where) == 2  # the FTS5 candidates, then the exact LIKE
        assert where[0].right.value == [1, 2, 3]  # the rowids of the three items
        query = sa.select(t.work_items.c.id).where(*where).order_by(t.work_items.c.updated_at)
        state = query.compile(dialect=conn.dialect).construct_expanded_state()
        rows = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + state.statement,
            tuple(state.parameters[k] for k in state.positiontup or ()),
        )
        plan = " | ".join(str(r[-1]) for r in rows)
        assert "USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert len(await tx._text_filter("ab")) == 1  # under three characters: the scan


@pytest.mark.postgres
async def test_without_pg_trgm_the_migration_makes_no_index_and_the_search_still_scans(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A role that may not create extensions (no superuser, no CREATE on the database):
    the migration warns and goes on, and the search is the scan."""
    admin_url = make_url(postgres_url())
    suffix = secrets.token_hex(4)
    role, database = f"sg_plain_{suffix}", f"sg_plain_{suffix}"
    admin = await asyncpg.connect(_dsn(admin_url))
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{suffix}'")
        await admin.execute(f"CREATE DATABASE {database}")
        await admin.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
        inside = await asyncpg.connect(_dsn(admin_url.set(database=database)))
        try:
            await inside.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        finally:
            await inside.close()
        url = admin_url.set(username=role, password=suffix, database=database)
        store = Store.connect(url.render_as_string(hide_password=False))
        try:
            with caplog.at_level(logging.WARNING):
                await store.migrate()
            assert "pg_trgm could not be created" in caplog.text
            async with store.tx() as tx:
                names = await tx._run(
                    sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'work_items'")
                )
                assert not {r.indexname for r in names} & {
                    "ix_work_items_title_trgm",
                    "ix_work_items_description_trgm",
                }
            items = await _fill(store)
            found = await _same_as_the_scan(store, ["checkout", "Überweisung", "100%"])
            assert set(found["checkout"]) == {items[0].id, items[1].id, items[2].id}
            assert found["Überweisung"] == [items[6].id]
        finally:
            await store.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
