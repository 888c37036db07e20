"""The hot statements run straight on the driver (``app/store/direct.py``: SQLite's
``sqlite3``, PostgreSQL's asyncpg) exactly as SQLAlchemy runs them: each one, with the
parameters the store gives it, is run both ways inside a transaction that is then
rolled back, and the rows it answers and what it leaves in every table must be the
same."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import tables
from app.model import CreateTarget, Fields, ObjectRef, Status, VendorObject, WorkItem
from app.store import HistoryEntry, NewEvent, Store, Tx
from app.store import statements as s
from app.store.direct import _HOT, Direct, DirectResult, Prepared, _faster
from tests.conftest import cut_connections, open_store, postgres_url

NOW = datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ITEM_IDS = ["a" * 32, "b" * 32, "c" * 32]


def _obj(system: str, external_id: str, scope: str = "") -> VendorObject:
    return VendorObject(
        ref=ObjectRef(system, scope, external_id),
        updated_at=NOW - timedelta(seconds=30),
        fields=Fields(title="Disk full", status=Status.OPEN),
        native={"status": "open"},
    )


@pytest.fixture
async def seeded(db_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A store with items, links in every state a claim tells apart (seen,
    to be created, dirty and due, dirty and claimed by another, of a paused system),
    events pending and done."""
    store = await open_store(db_kind, tmp_path)
    async with store.tx() as tx:
        await tx.insert_items(
            [
                WorkItem(id=i, title=f"Item {n}", labels=["db"], created_at=NOW, updated_at=NOW)
                for n, i in enumerate(ITEM_IDS)
            ]
        )
        a, b, c = ITEM_IDS
        await tx.insert_link(
            work_item_id=a, system="hookstream", scope="", now=NOW, seen=_obj("hookstream", "h1")
        )
        await tx.insert_link(
            work_item_id=a,
            system="devhelm",
            scope="page",
            now=NOW,
            create_target=CreateTarget(scope="page", params={"notify_subscribers": False}),
            dirty=True,
        )
        await tx.insert_link(
            work_item_id=b,
            system="inboxops",
            scope="",
            now=NOW,
            seen=_obj("inboxops", "t1"),
            version=2,
            dirty=True,
        )
        claimed = await tx.insert_link(
            work_item_id=b,
            system="hookstream",
            scope="",
            now=NOW,
            seen=_obj("hookstream", "h2"),
            dirty=True,
        )
        await tx.insert_link(
            work_item_id=c,
            system="incidentio",
            scope="inc",
            now=NOW,
            seen=_obj("incidentio", "f1", "inc"),
            dirty=True,
        )
        await tx._run(
            sa.update(tables.links)
            .where(tables.links.c.id == claimed)
            .values(claimed_by="other", claimed_until=LATER)
        )
        await tx.connect_systems(["hookstream", "devhelm", "inboxops", "incidentio"], NOW)
        await tx.set_system("incidentio", paused=True)
        await tx.record_events(
            [
                NewEvent(
                    system="inboxops",
                    delivery_id=f"d{n}",
                    source="webhook",
                    event_type="ticket.updated",
                    body=b'{"n": %d}' % n,
                )
                for n in range(3)
            ]
            + [
                NewEvent(
                    system="devhelm",
                    delivery_id="done",
                    source="poll",
                    event_type="poll",
                    body=b"{}",
                    state="done",
                    outcome="ok",
                )
            ],
            now=NOW,
        )
    yield store
    await store.close()


def read(name: str) -> dict[bool, Any]:
    """A bulk read in each dialect's form."""
    return both(getattr(s.READS[False], name), getattr(s.READS[True], name))


def _written(version: int, **extra: Any) -> dict[str, Any]:
    # link 3 is on item b; a write for another item's version is one the link moved from
    return {
        "b_id": 3,
        "b_claimed_by": "",
        "b_item": ITEM_IDS[1],
        "b_version": version,
        "b_again": LATER,
    } | extra


def both(sqlite: Any, postgres: Any) -> dict[bool, Any]:
    """A statement in each dialect's form (True: PostgreSQL)."""
    return {False: sqlite, True: postgres}


#: Each hot statement with the parameter shapes the store gives it, edge cases included:
#: one statement for both dialects, or its form per dialect (``both``; a dialect left
#: out runs it through SQLAlchemy).
CASES: list[tuple[str, Any, Any]] = [
    (
        "save item",
        s.SAVE_ITEM,
        [
            {
                "b_id": ITEM_IDS[0],
                "title": "Renamed",
                "status": "resolved",
                "version": 2,
                "updated_at": LATER,
                "labels": ["db", "disk"],
                "stamps": {"status": {"at": "x"}},
                "snoozed_until": None,
            },
            {
                "b_id": ITEM_IDS[1],
                "title": "Other",
                "status": "open",
                "version": 3,
                "updated_at": LATER,
                "labels": [],
                "stamps": {},
                "snoozed_until": LATER,
            },
        ],
    ),
    (
        "record seen",
        s.RECORD_SEEN,
        [
            {
                "b_id": 1,
                "known_state": {"fields": {"title": "x"}},
                "vendor_updated_at": LATER,
                "last_synced_at": LATER,
            },
        ],
    ),
    (
        "mark dirty",
        both(s.MARK_DIRTY[True], s.MARK_DIRTY[False]),
        [{"b_id": 1, "b_version": 4}, {"b_id": 3, "b_version": 1}],
    ),
    ("finish writes, synced", s.FINISH_WRITE, [_written(2), _written(1, b_id=4)]),
    ("finish writes, link moved since", s.FINISH_WRITE, [_written(5, b_item=ITEM_IDS[0])]),
    (
        # an update: the object's identity is left as it is (statements.created_values)
        "finish writes, updated",
        s.FINISH_WRITE,
        [_written(2, known_state={"fields": {}}, vendor_updated_at=LATER, last_synced_at=LATER)],
    ),
    (
        "finish writes, written",
        s.FINISH_WRITE,
        [
            _written(
                2,
                external_id="t1",
                scope="",
                known_state={"fields": {}},
                vendor_updated_at=LATER,
                last_synced_at=LATER,
                create_target=None,
            ),
        ],
    ),
    (
        "claim links",
        both(s.CLAIM_LINKS[False], s.CLAIM_LINKS[True]),
        {
            "b_now": NOW,
            "b_until": LATER,
            "b_worker": "w1",
            "b_limit": 10,
            "b_busy": [],
            "b_full": [],
        },
    ),
    (
        "claim links, some busy",
        both(s.CLAIM_LINKS[False], s.CLAIM_LINKS[True]),
        {
            "b_now": NOW,
            "b_until": LATER,
            "b_worker": "w1",
            "b_limit": 10,
            "b_busy": [2, 9],
            "b_full": [],
        },
    ),
    (
        "claim links, two systems full",
        both(s.CLAIM_LINKS[False], s.CLAIM_LINKS[True]),
        {
            "b_now": NOW,
            "b_until": LATER,
            "b_worker": "w1",
            "b_limit": 10,
            "b_busy": [],
            "b_full": ["devhelm", "hookstream"],
        },
    ),
    (
        "claim links, after the other's lease",
        both(s.CLAIM_LINKS[False], s.CLAIM_LINKS[True]),
        {
            "b_now": LATER + timedelta(seconds=1),
            "b_until": LATER + timedelta(minutes=1),
            "b_worker": "w1",
            "b_limit": 1,
            "b_busy": [3],
            "b_full": [],
        },
    ),
    (
        "claim these links (an engine transaction's)",
        both(s.CLAIM_THESE_LINKS[False], s.CLAIM_THESE_LINKS[True]),
        {
            "b_now": NOW,
            "b_until": LATER,
            "b_worker": "w1",
            "b_limit": 10,
            "b_busy": [],
            "b_full": ["hookstream"],
            "b_ids": [1, 2, 3, 9],
        },
    ),
    (
        "claim events",
        both(s.CLAIM_EVENTS[False], s.CLAIM_EVENTS[True]),
        {"b_now": NOW, "b_until": LATER, "b_limit": 2, "b_full": []},
    ),
    (
        "claim events, one system full",
        both(s.CLAIM_EVENTS[False], s.CLAIM_EVENTS[True]),
        {"b_now": NOW, "b_until": LATER, "b_limit": 5, "b_full": ["devhelm"]},
    ),
    ("items", read("items"), {"b_ids": [ITEM_IDS[2], ITEM_IDS[0], "missing"]}),
    ("items, none", read("items"), {"b_ids": []}),
    ("items, locked", {True: s.READS[True].items_locked}, {"b_ids": ITEM_IDS[:2]}),
    ("links by id", read("links_by_id"), {"b_ids": [5, 2, 1]}),
    ("links, locked", {True: s.READS[True].lock_links}, {"b_ids": [5, 2, 1]}),
    ("links of items", read("links_of_items"), {"b_ids": ITEM_IDS[:2]}),
    (
        "links of items, locked",
        {True: s.READS[True].links_of_items_locked},
        {"b_ids": ITEM_IDS[:2]},
    ),
    (
        "links of objects",
        read("links_of_objects"),
        {"b_system": "hookstream", "b_ids": ["h2", "h1"]},
    ),
    (
        "items of objects",
        read("items_of_objects"),
        {"b_system": "inboxops", "b_ids": ["t1", "t9"]},
    ),
    (
        "record events, a duplicate and a default",
        {False: s.RECORD_EVENT[False]},
        [
            {
                "system": "inboxops",
                "delivery_id": "d1",
                "source": "webhook",
                "body": b"{}",
                "received_at": NOW,
            },
            {
                "system": "inboxops",
                "delivery_id": "d7",
                "source": "webhook",
                "body": b"{}",
                "received_at": NOW,
            },
            {
                "system": "hookstream",
                "delivery_id": "d1",
                "source": "webhook",
                "body": b"{}",
                "received_at": NOW,
            },
        ],
    ),
    (
        "record events, all columns",
        {False: s.RECORD_EVENT[False]},
        [
            {
                "system": "hookstream",
                "delivery_id": "d8",
                "source": "webhook",
                "event_type": "x",
                "body": b"\x00\xff",
                "headers": {"webhook-id": "d8"},
                "state": "pending",
                "outcome": None,
                "attempts": 0,
                "claimed_until": None,
                "received_at": NOW,
                "processed_at": None,
            },
            {
                "system": "hookstream",
                "delivery_id": "d9",
                "source": "webhook",
                "event_type": "x",
                "body": b"{}",
                "headers": {},
                "state": "pending",
                "outcome": None,
                "attempts": 1,
                "claimed_until": LATER,  # handed to the inbox worker
                "received_at": NOW,
                "processed_at": None,
            },
        ],
    ),
    (
        "finish events",
        s.FINISH_EVENT,
        [
            {"b_id": 1, "state": "done", "outcome": "ok", "processed_at": LATER},
            {"b_id": 2, "state": "failed", "outcome": "boom", "processed_at": LATER},
        ],
    ),
    (
        "history",
        s.INSERT_HISTORY,
        [
            {
                "work_item_id": ITEM_IDS[0],
                "kind": "field",
                "at": LATER,
                "field": "status",
                "old_value": "open",
                "new_value": "resolved",
                "system": "inboxops",
                "event_id": "d1",
                "detail": None,
            },
            {
                "work_item_id": ITEM_IDS[0],
                "kind": "note",
                "at": LATER,
                "field": None,
                "old_value": None,
                "new_value": {"a": [1, 2]},
                "system": None,
                "event_id": None,
                "detail": "ünïcode",
            },
        ],
    ),
    (
        "attempts",
        s.INSERT_ATTEMPTS,
        [
            {
                "link_id": 1,
                "work_item_id": ITEM_IDS[0],
                "system": "hookstream",
                "action": "update",
                "attempt": 1,
                "outcome": "ok",
                "status_code": 200,
                "error": None,
                "duration_ms": 12.5,
                "payload": {"status": "resolved"},
                "worker": "w1",
                "at": LATER,
            },
        ],
    ),
]


def _statement(case: Any, postgres: bool) -> Any:
    """A case's statement in one dialect's form (None: the dialect has no case of it)."""
    return case.get(postgres) if isinstance(case, dict) else case


def _dump(raw: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table.name: raw.execute(f"SELECT * FROM {table.name} ORDER BY rowid").fetchall()
        for table in tables.metadata.sorted_tables
    }


async def _dump_postgres(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    dumped = {}
    for table in tables.metadata.sorted_tables:
        rows = await conn.execute(sa.text(f"SELECT * FROM {table.name}"))
        dumped[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return dumped


async def _run_once(store: Store, statement: Any, params: Any, direct: Direct | None) -> Any:
    """Run ``statement`` in a transaction that is rolled back: what it answered and what
    it left in the tables."""

    def answered(result: Any) -> tuple[Any, Any]:
        if direct is not None:
            assert isinstance(result, DirectResult), "SQLAlchemy ran a hot statement"
        # (a single-row INSERT through SQLAlchemy on PostgreSQL returns its new id for
        # itself, answering no rows where the driver path answers none)
        rows = [dict(r._mapping) for r in result] if result.returns_rows else None
        return rows or None, None if result.returns_rows else result.rowcount

    if isinstance(store.engine, AsyncEngine):
        async with store.engine.connect() as aconn:
            # a rollback leaves a sequence where it went: put them back, so that both runs
            # give a new row the same id
            sequences = (
                await aconn.execute(
                    sa.text(
                        "SELECT sequencename, coalesce(last_value, 1), last_value IS NOT NULL"
                        " FROM pg_sequences WHERE schemaname = current_schema()"
                    )
                )
            ).all()
            await aconn.commit()
            transaction = await aconn.begin()
            try:
                tx = Tx(aconn, store.dialect, direct)
                rows, count = answered(await tx._run(statement, params))
                return rows, count, await _dump_postgres(aconn)
            finally:
                await transaction.rollback()
                for name, value, called in sequences:
                    await aconn.execute(
                        sa.text("SELECT setval(:name, :value, :called)"),
                        {"name": name, "value": value, "called": called},
                    )
                await aconn.commit()
    async with store._turn:
        with store.engine.connect() as conn:
            transaction = conn.begin()
            try:
                tx = Tx(conn, store.dialect, direct)
                rows, count = answered(await tx._run(statement, params))
                return rows, count, _dump(conn.connection.driver_connection)
            finally:
                transaction.rollback()


RUNS = [
    pytest.param(db_kind, name, statement, params, id=f"{db_kind}-{name}")
    for db_kind in ("sqlite", "postgres")
    for name, case, params in CASES
    if (statement := _statement(case, db_kind == "postgres")) is not None
]


@pytest.mark.parametrize(("db_kind", "name", "statement", "params"), RUNS)
async def test_a_hot_statement_runs_on_the_driver_as_through_sqlalchemy(
    seeded: Store, name: str, statement: Any, params: Any
) -> None:
    rows, count, tables_after = await _run_once(seeded, statement, params, None)
    direct_rows, direct_count, direct_tables = await _run_once(
        seeded, statement, params, seeded._direct
    )
    if rows is not None and name.startswith(("claim", "record events")):
        # UPDATE/INSERT ... RETURNING promise no order; the store sorts what it needs
        rows, direct_rows = sorted(rows, key=repr), sorted(direct_rows, key=repr)
    assert direct_rows == rows
    if count is not None:  # not a statement answering rows (through SQLAlchemy)
        assert direct_count == count
    assert direct_tables == tables_after
    if not name.endswith("none"):
        # the case is not vacuous: the statement answered rows or changed the tables
        untouched = await _run_once(seeded, sa.select(1), None, None)
        assert rows or tables_after != untouched[2]


def test_every_hot_statement_has_a_case() -> None:
    assert {id(_statement(case, pg)) for _, case, _ in CASES for pg in (False, True)} - {
        id(None)
    } == _HOT


async def test_an_error_on_the_driver_is_sqlalchemys_error(seeded: Store) -> None:
    """A constraint broken straight on the driver raises what SQLAlchemy would have
    raised (the store turns IntegrityError into AlreadyLinked), and the transaction is
    rolled back as a whole."""
    attempt = dict(CASES[-1][2][0], work_item_id=None)  # NOT NULL

    async def history_then_a_bad_attempt() -> None:
        async with seeded.tx() as tx:
            await tx.add_history([HistoryEntry(work_item_id=ITEM_IDS[0], kind="note", at=NOW)])
            await tx._run(s.INSERT_ATTEMPTS, [attempt])

    with pytest.raises(sa.exc.IntegrityError) as raised:
        await history_then_a_bad_attempt()
    assert isinstance(raised.value.orig, seeded.engine.dialect.loaded_dbapi.IntegrityError)
    async with seeded.tx() as tx:
        assert await tx.history_of(ITEM_IDS[0]) == []
        assert await tx.attempts_of(1) == []


async def test_a_statement_that_cannot_be_prepared_is_left_to_sqlalchemy(
    seeded: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An SQLAlchemy whose internals moved must not break the store: the statement runs
    through SQLAlchemy, as before the driver path, and the log says why."""

    def moved(*_: Any, **__: Any) -> None:
        raise AttributeError("'SQLCompiler' object has no attribute 'positiontup'")

    monkeypatch.setattr(Prepared, "of", moved)
    async with seeded.tx() as tx:
        result = await tx._run(s.READS[tx.postgres].links_of_items, {"b_ids": ITEM_IDS[:1]})
        assert not isinstance(result, DirectResult)
        assert [row.system for row in result] == ["hookstream", "devhelm"]
    assert "left to SQLAlchemy" in caplog.text


def test_a_datetime_is_written_as_sqlalchemy_writes_it() -> None:
    """The driver path's DATETIME text is SQLAlchemy's, character for character, for
    every kind of value a column takes: the claims compare these texts in SQL, so one
    spelled differently (no microseconds, a time zone) would sort wrongly."""
    dialect = sqlite_dialect()
    theirs = tables.TZ._cached_bind_processor(dialect)
    ours = _faster(tables.TZ, dialect, theirs)
    assert ours is not theirs
    rng = random.Random(15)
    values: list[Any] = [
        None,
        date(2026, 12, 5),
        datetime(1, 1, 1),
        datetime(999, 12, 31, 23, 59, 59),
        NOW,
        NOW.replace(microsecond=0),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5))),
    ]
    values += [
        datetime(
            rng.randint(1, 9999),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.choice([0, rng.randint(0, 999_999)]),
            tzinfo=rng.choice([None, UTC]),
        )
        for _ in range(2_000)
    ]
    assert [ours(v) for v in values] == [theirs(v) for v in values]
    # another type keeps its own processor
    assert _faster(sa.Integer(), dialect, None) is None
    json_processor = sa.JSON()._cached_bind_processor(dialect)
    assert _faster(sa.JSON(), dialect, json_processor) is json_processor


@pytest.mark.postgres
async def test_a_connection_lost_under_a_hot_statement_fails_one_transaction_only(
    tmp_path: Path,
) -> None:
    """A pooled connection the server closed, taken unchecked, fails the transaction whose
    first statement is a hot one, with the error SQLAlchemy raises for a lost connection;
    the pool then replaces its connections, so the next transaction works (as through
    SQLAlchemy: ``tests/test_store.py``). Had the dead connection gone back to the pool,
    the next transaction would fail too."""
    await (await open_store("postgres", tmp_path)).close()  # migrated and empty
    store = Store.connect(postgres_url(), ping_idle_s=3600.0)
    try:
        async with store.tx() as tx:
            await tx.insert_items([WorkItem(id=ITEM_IDS[0], created_at=NOW, updated_at=NOW)])
        assert await cut_connections(postgres_url()) >= 1
        with pytest.raises(sa.exc.DBAPIError) as lost:
            async with store.tx() as tx:
                await tx.items_by_id(ITEM_IDS)
        assert lost.value.connection_invalidated
        async with store.tx() as tx:
            assert list(await tx.items_by_id(ITEM_IDS)) == ITEM_IDS[:1]
    finally:
        await store.close()


@pytest.mark.postgres
async def test_an_asyncpg_adapter_that_moved_leaves_the_statements_to_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The asyncpg path drives parts of SQLAlchemy's adapter (its transaction, its lock,
    its error translation). An SQLAlchemy whose adapter lacks one must not break the
    store: every statement runs through SQLAlchemy, and the log says why, once."""
    from app.store import direct

    monkeypatch.setattr(direct, "_ADAPTER_PARTS", (*direct._ADAPTER_PARTS, "_moved_away"))
    store = await open_store("postgres", tmp_path)
    try:
        for _ in range(2):
            async with store.tx() as tx:
                await tx.insert_items([WorkItem(id=ITEM_IDS[0], created_at=NOW, updated_at=NOW)])
                result = await tx._run(s.READS[True].items, {"b_ids": ITEM_IDS})
                assert not isinstance(result, DirectResult)
                assert [row.id for row in result] == ITEM_IDS[:1]
                await tx._run(sa.delete(tables.work_items))
    finally:
        await store.close()
    assert caplog.text.count("left to SQLAlchemy") == 1
