"""The storage layer, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import importlib
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from app.errors import AlreadyLinked
from app.model import CreateTarget, Fields, ObjectRef, Status, VendorObject, WorkItem, utcnow
from app.store import HistoryEntry, NewEvent, Store, WriteAttempt
from tests.conftest import cut_connections, open_store


def _item(item_id: str = "a" * 32) -> WorkItem:
    now = utcnow()
    return WorkItem(id=item_id, title="Disk full", created_at=now, updated_at=now)


def _obj(external_id: str = "x1", status: Status = Status.OPEN) -> VendorObject:
    return VendorObject(
        ref=ObjectRef("inboxops", "", external_id),
        updated_at=utcnow(),
        fields=Fields(title="Disk full", status=status),
        native={"status": "open"},
    )


async def test_item_round_trip(store: Store) -> None:
    item = _item()
    async with store.tx() as tx:
        await tx.insert_item(item)
    async with store.tx() as tx:
        got = await tx.get_item(item.id, lock=True)
    assert got is not None
    assert got.title == "Disk full"
    assert got.created_at == item.created_at
    assert got.created_at.tzinfo is not None


async def test_link_is_unique_per_system_scope_and_id(store: Store) -> None:
    async with store.tx() as tx:
        await tx.insert_item(_item())
        await tx.insert_link(
            work_item_id="a" * 32, system="inboxops", scope="", now=utcnow(), seen=_obj()
        )
    with pytest.raises(AlreadyLinked):
        async with store.tx() as tx:
            await tx.insert_link(
                work_item_id="a" * 32, system="inboxops", scope="", now=utcnow(), seen=_obj()
            )
    async with store.tx() as tx:
        link = await tx.link_for(ObjectRef("inboxops", "", "x1"))
        assert link is not None
        assert link.known is not None and link.known.fields.status is Status.OPEN


async def test_claim_is_one_writer_per_link_and_lease_lapses(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        link_id = await tx.insert_link(
            work_item_id="a" * 32,
            system="devhelm",
            scope="sp",
            now=now,
            create_target=CreateTarget(scope="sp"),
            dirty=True,
        )
    async with store.tx() as tx:
        first = await tx.claim_due_links(
            worker="w1", now=now, lease=timedelta(seconds=30), limit=10
        )
    async with store.tx() as tx:
        second = await tx.claim_due_links(
            worker="w2", now=now, lease=timedelta(seconds=30), limit=10
        )
    assert [link.id for link in first] == [link_id]
    assert second == []
    async with store.tx() as tx:
        later = await tx.claim_due_links(
            worker="w2", now=now + timedelta(seconds=31), lease=timedelta(seconds=30), limit=10
        )
    assert [link.id for link in later] == [link_id]
    # the object is still to be created: the second claim knows an earlier attempt may
    # have made it (the adapters look before creating again)
    assert (first[0].create_claims, later[0].create_claims) == (1, 2)


async def test_a_claim_leaves_out_the_systems_it_is_told_are_full(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        ids = {
            system: await tx.insert_link(
                work_item_id="a" * 32,
                system=system,
                scope="sp",
                now=now,
                create_target=CreateTarget(scope="sp"),
                dirty=True,
            )
            for system in ("devhelm", "incidentio", "hookstream")
        }
    lease = timedelta(seconds=30)
    async with store.tx() as tx:
        claimed = await tx.claim_due_links(
            worker="w", now=now, lease=lease, limit=10, full=["devhelm", "hookstream"]
        )
    assert [link.id for link in claimed] == [ids["incidentio"]]
    async with store.tx() as tx:  # no longer full: its links are claimed as before
        claimed = await tx.claim_due_links(worker="w", now=now, lease=lease, limit=10)
    assert sorted(link.id for link in claimed) == sorted([ids["devhelm"], ids["hookstream"]])


async def test_a_link_being_created_is_not_unlinked_until_its_claim_lapses(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        link_id = await tx.insert_link(
            work_item_id="a" * 32,
            system="devhelm",
            scope="sp",
            now=now,
            create_target=CreateTarget(scope="sp"),
            dirty=True,
        )
    lease = timedelta(seconds=30)
    async with store.tx() as tx:
        (claimed,) = await tx.claim_due_links(worker="w", now=now, lease=lease, limit=10)
    assert claimed.id == link_id
    async with store.tx() as tx:
        assert await tx.unlink(link_id, unless_creating_at=now) is False
        assert await tx.get_link(link_id) is not None
    async with store.tx() as tx:  # the claim lapsed: its writer died
        assert await tx.unlink(link_id, unless_creating_at=now + 2 * lease) is True
        assert await tx.get_link(link_id) is None


async def test_an_event_claim_leaves_out_the_systems_it_is_told_are_full(store: Store) -> None:
    now = utcnow()
    lease = timedelta(seconds=30)
    async with store.tx() as tx:
        await tx.record_events(
            [
                NewEvent(
                    system=system,
                    delivery_id=f"d-{system}",
                    source="webhook",
                    event_type="x",
                    body=b"{}",
                )
                for system in ("hookstream", "inboxops")
            ],
            now=now,
        )
    async with store.tx() as tx:
        claimed = await tx.claim_events(now=now, lease=lease, limit=10, full=["hookstream"])
    assert [event.system for event in claimed] == ["inboxops"]
    async with store.tx() as tx:  # left pending, unclaimed: claimed once no longer full
        claimed = await tx.claim_events(now=now, lease=lease, limit=10)
    assert [(event.system, event.attempts) for event in claimed] == [("hookstream", 1)]


def _delivery(delivery_id: str) -> NewEvent:
    return NewEvent(
        system="inboxops", delivery_id=delivery_id, source="webhook", event_type="x", body=b"{}"
    )


async def test_a_transaction_of_one_statement_refuses_a_second(store: Store) -> None:
    """``tx(one_statement=True)`` runs one statement: a second raises before it runs. On
    PostgreSQL the first committed on its own (autocommit), as its docstring says; on
    SQLite the transaction is an ordinary one and the error rolls it back."""
    now = utcnow()

    async def two_statements() -> None:
        async with store.tx(one_statement=True) as tx:
            assert await tx.record_events([_delivery("d1")], now=now) != [None]
            await tx.claim_events(now=now, lease=timedelta(seconds=30), limit=10)

    with pytest.raises(RuntimeError, match="second statement"):
        await two_statements()
    async with store.tx() as tx:
        assert await tx.pending_events() == (1 if store.dialect == "postgresql" else 0)
    async with store.tx(one_statement=True) as tx:  # a duplicate delivery, as in any tx
        ids = await tx.record_events([_delivery("d1"), _delivery("d2")], now=now)
    stored = [event_id is not None for event_id in ids]
    assert stored == ([False, True] if store.dialect == "postgresql" else [True, True])


async def test_postgres_commits_a_transaction_of_one_statement_on_its_own(
    tmp_path: Path,
) -> None:
    """On PostgreSQL a transaction of one statement is sent without BEGIN and COMMIT: the
    statement is committed as soon as it has run, visible to another connection while
    the block is still open (it would not be inside a transaction)."""
    store = await open_store("postgres", tmp_path)
    now = utcnow()
    try:
        async with store.tx(one_statement=True) as tx:
            (event_id,) = await tx.record_events([_delivery("d1")], now=now)
            assert event_id is not None
            async with store.tx() as other:  # another pooled connection
                assert await other.get_event(event_id) is not None
        async with store.tx(one_statement=True) as tx:
            (claimed,) = await tx.claim_events(now=now, lease=timedelta(seconds=30), limit=10)
            async with store.tx() as other:  # the claim too: not claimable again
                assert (
                    await other.claim_events(now=now, lease=timedelta(seconds=30), limit=10) == []
                )
        assert claimed.id == event_id
        assert store.committed == 4
    finally:
        await store.close()


async def test_finish_write_keeps_link_dirty_when_the_item_moved_on(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        link_id = await tx.insert_link(
            work_item_id="a" * 32, system="inboxops", scope="", now=now, seen=_obj()
        )
        await tx.mark_dirty([link_id], 2)
    async with store.tx() as tx:
        (link,) = await tx.claim_due_links(worker="w", now=now, lease=timedelta(seconds=5), limit=5)
        await tx.mark_dirty([link_id], 3)  # a newer change lands while the write is out
        await tx.finish_write(link, _obj(status=Status.RESOLVED), version=2, now=now)
    async with store.tx() as tx:
        after = await tx.get_link(link_id)
    assert after is not None and after.dirty and after.synced_version == 2
    async with store.tx() as tx:
        (link,) = await tx.claim_due_links(worker="w", now=now, lease=timedelta(seconds=5), limit=5)
        await tx.finish_write(link, None, version=3, now=now)
        done = await tx.get_link(link_id)
    assert done is not None and not done.dirty


async def test_dead_letter_revive_and_discard(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        ids = [
            await tx.insert_link(
                work_item_id="a" * 32,
                system=s,
                scope="",
                now=now,
                create_target=CreateTarget(),
                dirty=True,
            )
            for s in ("inboxops", "incidentio")
        ]
    async with store.tx() as tx:
        for link in await tx.claim_due_links(
            worker="w", now=now, lease=timedelta(seconds=5), limit=5
        ):
            await tx.dead_letter(link, "rejected: subject is required")
        assert {link.id for link in await tx.outbox("dead")} == set(ids)
        assert await tx.dead_count() == 2
    async with store.tx() as tx:
        assert await tx.revive(ids[0]) == 1
        assert await tx.discard() == 1
        assert await tx.dead_count() == 0
        due = await tx.claim_due_links(worker="w", now=now, lease=timedelta(seconds=5), limit=5)
    assert [link.id for link in due] == [ids[0]]


async def test_history_kept_and_pruned(store: Store) -> None:
    old = utcnow() - timedelta(days=100)
    async with store.tx() as tx:
        await tx.add_history(
            [
                HistoryEntry(
                    work_item_id="i",
                    kind="change",
                    field="status",
                    old_value="open",
                    new_value="resolved",
                    system="hookstream",
                    at=old,
                ),
                HistoryEntry(
                    work_item_id="i",
                    kind="change",
                    field="title",
                    old_value="a",
                    new_value="b",
                    system="devhelm",
                    at=utcnow(),
                ),
            ]
        )
    async with store.tx() as tx:
        assert await tx.prune(utcnow() - timedelta(days=90)) == 1
        (left,) = await tx.history_of("i")
    assert left.field == "title" and left.old_value == "a"


def _attempt(
    item_id: str, at: Any, outcome: str = "ok", version: int | None = 1, link_id: int = 7
) -> WriteAttempt:
    ok = outcome == "ok"
    return WriteAttempt(
        link_id=link_id,
        work_item_id=item_id,
        system="devhelm",
        action="update",
        attempt=1,
        outcome=outcome,
        status_code=None if ok else 503,
        error=None if ok else "devhelm: unavailable (HTTP 503)",
        duration_ms=3.0,
        payload={"status": "resolved"},
        worker="w",
        at=at,
        external_id="inc-1" if ok else None,
        version=version if ok else None,
    )


def _change(item_id: str, at: Any, value: str) -> HistoryEntry:
    return HistoryEntry(work_item_id=item_id, kind="change", field="title", new_value=value, at=at)


async def test_an_items_history_places_its_writes_among_its_rows_by_time(store: Store) -> None:
    """A write is recorded once, as its write attempt; the item's history shows each
    successful one as a ``write`` entry where it happened among the history's rows
    (a row and a write at the same instant: the row first), and no failed one."""
    t0 = utcnow() - timedelta(minutes=10)
    at = [t0 + timedelta(seconds=s) for s in range(6)]
    async with store.tx() as tx:
        await tx.add_history([_change("i", at[0], "a"), _change("i", at[2], "b")])
        await tx.add_history([_change("i", at[4], "c"), _change("other", at[1], "x")])
        await tx.add_attempts(
            [
                _attempt("i", at[1], version=1),
                _attempt("i", at[3], outcome="retry"),
                _attempt("i", at[4], version=3),
                _attempt("i", at[5], version=4),
                _attempt("other", at[2], version=9),
            ]
        )
    async with store.tx() as tx:
        oldest = await tx.history_of("i")
        newest = await tx.recent_history("i", limit=3)
        first = await tx.history_of("i", limit=2)
        attempts = await tx.attempts_of(7)

    def shown(entries: list[HistoryEntry]) -> list[str]:
        return [str(e.new_value if e.kind == "change" else e.detail) for e in entries]

    assert shown(oldest) == [
        "a",
        "update inc-1 (version 1)",
        "b",
        "c",
        "update inc-1 (version 3)",
        "update inc-1 (version 4)",
    ]
    assert [e.at for e in oldest] == [at[0], at[1], at[2], at[4], at[4], at[5]]
    assert oldest[1].kind == "write" and oldest[1].system == "devhelm"
    assert oldest[1].new_value == {"status": "resolved"}
    assert shown(newest) == shown(oldest)[-3:]
    assert shown(first) == shown(oldest)[:2]
    assert len(attempts) == 5 and attempts[1].outcome == "retry"  # the link's own record


async def test_the_history_of_writes_from_before_migration_0008_is_shown_once(
    tmp_path: Path,
) -> None:
    """A database made before writes were read from the attempts holds each write twice:
    its attempt (without ``external_id`` and ``version``) and a history row. After the
    upgrade the history row stands for it, once; writes made after come from the
    attempts."""
    from app import tables

    store = Store.connect(f"sqlite:///{tmp_path / 'old.db'}")
    await store.migrate("0007")
    before = utcnow() - timedelta(minutes=5)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            tables.history.insert().values(
                work_item_id="i",
                kind="write",
                system="devhelm",
                new_value={"status": "resolved"},
                detail="update inc-1 (version 1)",
                at=before,
            )
        )
        conn.execute(
            tables.write_attempts.insert().values(
                link_id=7,
                work_item_id="i",
                system="devhelm",
                action="update",
                attempt=1,
                outcome="ok",
                duration_ms=3.0,
                payload={"status": "resolved"},
                worker="w",
                at=before,
            )
        )
    try:
        await store.migrate()
        async with store.tx() as tx:
            await tx.add_attempts([_attempt("i", utcnow(), version=2)])
        async with store.tx() as tx:
            details = [e.detail for e in await tx.history_of("i")]
    finally:
        await store.close()
    assert details == ["update inc-1 (version 1)", "update inc-1 (version 2)"]


async def test_system_state_defaults_and_deferral(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        assert (await tx.system_state("devhelm")).paused is False
        await tx.set_system("devhelm", deferred_until=now + timedelta(seconds=7))
        await tx.set_system("inboxops", paused=True)
        assert sorted(await tx.held_systems(now)) == ["devhelm", "inboxops"]
        assert await tx.held_systems(now + timedelta(seconds=8)) == ["inboxops"]


async def test_migrations_build_exactly_the_schema_the_code_declares(store: Store) -> None:
    """Every table, column and index in app/tables.py is made by a migration, and no
    migration leaves anything the code does not declare (alembic's own comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app import tables

    search = importlib.import_module("app.migrations.versions.0007_work_item_text_search")

    # the search index of migration 0007 is made by hand, outside app/tables.py: the
    # FTS5 table (and its shadow tables) on SQLite, the trigram indexes on PostgreSQL
    # (tests/test_search.py checks them)
    def declared(name: str | None, kind: str, _parent: Any) -> bool:
        if kind == "table":
            return not (name or "").startswith("work_items_fts")
        return not (kind == "index" and name in search.TRGM_INDEXES)

    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"include_name": declared})
        return list(compare_metadata(context, tables.metadata))

    async with store.tx() as tx:
        if isinstance(tx.conn, Connection):
            differences = diff(tx.conn)
        else:
            differences = await tx.conn.run_sync(diff)
    assert differences == []


def _plan(conn: Connection, statement: Any, params: dict[str, Any]) -> str:
    """SQLite's query plan for a statement exactly as the store runs it."""
    compiled = statement.compile(dialect=conn.dialect)
    state = compiled.construct_expanded_state(params)  # expanding IN lists rendered in place
    rows = conn.exec_driver_sql(
        "EXPLAIN QUERY PLAN " + state.statement,
        tuple(state.parameters[k] for k in state.positiontup or ()),
    )
    return " | ".join(str(row[-1]) for row in rows)


async def test_sqlite_plans_use_the_lookup_and_outbox_indexes(tmp_path: Path) -> None:
    """The statements of the hot paths use their indexes on SQLite (whose plans follow
    from the schema; PostgreSQL's planner chooses by statistics): a claim walks the
    partial index of dirty links in id order, never the whole table nor a sort of the
    backlog, and a webhook's object is found by (system, id) without its scope."""
    from app.store import statements

    store = await open_store("sqlite", tmp_path)
    async with store.tx() as tx:
        assert isinstance(tx.conn, Connection)
        now = utcnow()
        claim = _plan(
            tx.conn,
            statements.CLAIM_LINKS[False],
            {
                "b_now": now,
                "b_until": now,
                "b_worker": "w",
                "b_limit": 5,
                "b_busy": [3, 7],
                "b_full": ["devhelm"],
            },
        )
        lookup = _plan(
            tx.conn,
            statements.READS[False].links_of_objects,
            {"b_system": "inboxops", "b_ids": ["x1"]},
        )
    await store.close()
    assert "USING INDEX ix_links_pending" in claim, claim
    assert "TEMP B-TREE" not in claim and "SCAN links |" not in claim + " |", claim
    assert "ix_links_system_external" in lookup, lookup


async def test_the_first_connected_moment_is_kept_once_stored(store: Store) -> None:
    first = utcnow()
    async with store.tx() as tx:
        await tx.set_system("devhelm", paused=True)  # a row without the moment yet
        moments = await tx.connect_systems(["devhelm", "inboxops"], first)
    assert moments == {"devhelm": first, "inboxops": first}
    async with store.tx() as tx:
        again = await tx.connect_systems(["inboxops", "hookstream"], first + timedelta(hours=1))
        state = await tx.system_state("devhelm")
    assert again == {"inboxops": first, "hookstream": first + timedelta(hours=1)}
    assert state.connected_at == first and state.paused


async def test_match_keys_are_indexed_once_per_rule_side_and_object(store: Store) -> None:
    now = utcnow()
    ticket, other = _obj("t-1"), _obj("t-2")
    async with store.tx() as tx:
        fresh = await tx.index_keys(ticket, [("r", "right", "orders")], now)
        assert fresh == {("r", "right")}
        await tx.index_keys(other, [("r", "right", "orders")], now)
        # seen again with the same key: nothing new; with another key: replaced
        assert await tx.index_keys(ticket, [("r", "right", "orders")], now) == set()
        assert await tx.index_keys(other, [("r", "right", "billing")], now) == {("r", "right")}
    async with store.tx() as tx:
        found = await tx.match_candidates("r", "right", "orders")
        assert [o.ref.external_id for o in found] == ["t-1"]
        assert found[0].raw == {} and found[0].fields.title == "Disk full"
        assert await tx.match_candidates("r", "left", "orders") == []
        assert [o.ref for o in await tx.match_candidates("r", "right", "billing")] == [other.ref]


async def test_an_item_id_taken_already_is_refused_as_linked(store: Store) -> None:
    async with store.tx() as tx:
        await tx.insert_item(_item("b" * 32))
    with pytest.raises(AlreadyLinked):
        async with store.tx() as tx:
            await tx.insert_item(_item("b" * 32))


async def test_page_items_is_a_keyset_page_with_filters(store: Store) -> None:
    start = utcnow() - timedelta(hours=1)
    items = [
        WorkItem(
            id=f"{n:032x}",
            title=f"{'Checkout' if n % 2 else 'Refunds'} down {n}",
            status=Status.RESOLVED if n == 3 else Status.OPEN,
            created_at=start,
            updated_at=start + timedelta(minutes=n // 2),  # pairs share a time
        )
        for n in range(7)
    ]
    async with store.tx() as tx:
        await tx.insert_items(items)
        await tx.insert_seen_links(
            [(items[5].id, _obj("t5")), (items[2].id, _obj("t2"))], now=start
        )
    newest_first = sorted(items, key=lambda i: (-i.updated_at.timestamp(), i.id))
    seen: list[str] = []
    after = None
    async with store.tx() as tx:
        while True:
            page = await tx.page_items(limit=3, after=after)
            seen += [i.id for i in page]
            if len(page) < 3:
                break
            after = (page[-1].updated_at, page[-1].id)
        assert seen == [i.id for i in newest_first]  # every item once, in order
        linked = await tx.page_items(system="inboxops")
        assert [i.id for i in linked] == [items[5].id, items[2].id]
        assert [i.id for i in await tx.page_items(system="devhelm")] == []
        found = await tx.page_items(text="CHECKOUT", status="open")
        assert [i.id for i in found] == [items[5].id, items[1].id]


async def test_dead_letters_of_one_system(store: Store) -> None:
    now = utcnow()
    async with store.tx() as tx:
        await tx.insert_item(_item())
        for system in ("inboxops", "incidentio", "devhelm"):
            await tx.insert_link(
                work_item_id="a" * 32,
                system=system,
                scope="",
                now=now,
                create_target=CreateTarget(),
                dirty=True,
            )
    async with store.tx() as tx:
        for link in await tx.claim_due_links(
            worker="w", now=now, lease=timedelta(seconds=5), limit=5
        ):
            await tx.dead_letter(link, "rejected")
        assert await tx.dead_by_system() == {"inboxops": 1, "incidentio": 1, "devhelm": 1}
        assert [link.system for link in await tx.outbox("dead", system="devhelm")] == ["devhelm"]
        assert await tx.revive(system="devhelm") == 1
        assert await tx.discard(system="inboxops") == 1
        assert await tx.dead_by_system() == {"incidentio": 1}
        assert await tx.queue_depth() == {"devhelm": 1}  # incidentio stays dead


async def test_sqlite_plans_count_and_list_the_outbox_through_its_partial_indexes(
    tmp_path: Path,
) -> None:
    """Grouped or filtered by system, the outbox's counts and lists read the few dead or
    pending links through their partial indexes, never every link of a system through
    ``ix_links_system_external`` (which SQLite prefers to skip a sort)."""
    import sqlalchemy as sa

    store = await open_store("sqlite", tmp_path)
    plans: list[str] = []
    async with store.tx() as tx:
        assert isinstance(tx.conn, Connection)
        conn = tx.conn

        def explain(_c: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if statement.startswith("SELECT") and "FROM links" in statement:
                rows = conn.connection.execute("EXPLAIN QUERY PLAN " + statement, params)
                plans.append(" | ".join(str(row[-1]) for row in rows))

        sa.event.listen(conn, "before_cursor_execute", explain)
        await tx.dead_by_system()
        await tx.queue_depth()
        await tx.outbox("dead", system="devhelm")
        await tx.outbox("pending", system="devhelm")
        sa.event.remove(conn, "before_cursor_execute", explain)
    await store.close()
    assert len(plans) == 4, plans
    for plan in plans:
        assert "ix_links_dead_letters" in plan or "ix_links_pending" in plan, plan
        assert "ix_links_system_external" not in plan, plan


async def test_the_write_ahead_log_stays_bounded_under_writes_that_never_pause(
    tmp_path: Path,
) -> None:
    """Transactions with no pause between them (SQLite only rewinds its log when a write
    begins while all of it is copied back, which they never let happen): once the log
    holds ``limit_frames`` frames, the store starts it over between two transactions, so
    it stays near that size instead of growing with everything written (12 GB in 25
    minutes of the soak before). Started over, not emptied: from then on the file keeps
    the limit's blocks, written over again (cheaper than growing a file), and is never
    cut below them."""
    import sqlalchemy as sa

    from app.store.database import SQLITE_PAGE_BYTES, WalCheckpointer

    path, wal = tmp_path / "wal.db", tmp_path / "wal.db-wal"
    store = Store.connect(f"sqlite:///{path}")
    assert store._checkpointer is not None
    store._checkpointer.stop()  # the same, checking every 5 ms with a 1 MiB limit
    store._checkpointer = WalCheckpointer(str(path), every_s=0.005)
    store._checkpointer.limit_frames = 256
    limit = 256 * SQLITE_PAGE_BYTES
    async with store.tx() as tx:
        await tx._run(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    insert = sa.text("INSERT INTO t (v) VALUES (:v)")
    sizes: list[int] = []
    try:
        for _ in range(6_000):
            async with store.tx() as tx:
                await tx._run(insert, [{"v": "x" * 300}] * 10)
            sizes.append(wal.stat().st_size)
    finally:
        await store.close()
    written = path.stat().st_size  # about what went through the log
    assert written > 15_000_000
    assert max(sizes) < written / 3, (max(sizes), written)
    reached = next(n for n, size in enumerate(sizes) if size >= limit)
    shrunk = sum(b < a for a, b in itertools.pairwise(sizes[reached:]))
    assert shrunk >= 2, "the log was never started over"
    assert min(sizes[reached:]) >= limit, "the log was emptied, not started over"


async def test_postgres_runs_a_bulk_read_as_one_statement_whatever_its_lists_length(
    tmp_path: Path,
) -> None:
    """On PostgreSQL a list parameter is one array, so a statement's text does not depend
    on how many values its list holds: asyncpg prepares it once per connection, instead
    of once per length (a claim's list of writes in flight takes every length from 0 to
    ``concurrency``). The rows are the same as the lists', and ``busy`` links stay out of
    a claim, whatever the length, empty included."""
    import sqlalchemy as sa

    store = await open_store("postgres", tmp_path)
    texts: list[str] = []

    def logged(query: Any) -> None:
        texts.append(query.query)

    def seen(dbapi_connection: Any, *_: Any) -> None:
        # asyncpg's own log of what it ran: the hot statements skip SQLAlchemy's events
        dbapi_connection.driver_connection.add_query_logger(logged)

    ids = [f"{n:032x}" for n in range(6)]
    now = utcnow()
    try:
        async with store.tx() as tx:
            link_ids = []
            for n, item_id in enumerate(ids):
                await tx.insert_item(_item(item_id))
                link_ids.append(
                    await tx.insert_link(
                        work_item_id=item_id,
                        system="inboxops",
                        scope="",
                        now=now,
                        seen=_obj(f"x{n}"),
                        dirty=True,
                    )
                )
        sa.event.listen(store.engine.sync_engine, "checkout", seen)
        for size in (1, 2, 5):
            async with store.tx() as tx:
                items = await tx.items_by_id(ids[:size])
                links = await tx.links_by_id(link_ids[:size])
                of_items = await tx.links_of_items(ids[:size], lock=True)
            assert sorted(items) == ids[:size]
            assert sorted(links) == link_ids[:size]
            assert sorted(link.id for link in of_items) == link_ids[:size]
        claims = []
        for k, busy in enumerate(([], link_ids[:1], link_ids[:4])):
            async with store.tx() as tx:  # each claim's lease over by the next's
                claimed = await tx.claim_due_links(
                    worker="w",
                    now=now + timedelta(seconds=k),
                    lease=timedelta(0),
                    limit=10,
                    busy=busy,
                    full=["x"],
                )
            claims.append(sorted(link.id for link in claimed))
        assert claims == [link_ids, link_ids[1:], link_ids[4:]]
    finally:
        sa.event.remove(store.engine.sync_engine, "checkout", seen)
        await store.close()
    # items, links, links of items and the claim, three lengths each: one text each
    # (not asyncpg's own look at the server's types when it first prepares a statement)
    reads = {
        text
        for text in texts
        if text.startswith(("SELECT work_items", "SELECT links", "UPDATE links"))
    }
    assert len(reads) == 4, sorted(reads)


@pytest.mark.postgres
async def test_a_connection_cut_while_idle_in_the_pool_is_replaced_unseen(
    tmp_path: Path,
) -> None:
    """A pooled connection idle for longer than ``ping_idle_s`` is checked before a
    transaction takes it: one the server closed meanwhile is replaced, and the
    transaction never sees it."""
    from tests.conftest import postgres_url

    await (await open_store("postgres", tmp_path)).close()  # migrated and empty
    store = Store.connect(postgres_url(), ping_idle_s=0.0)
    try:
        async with store.tx() as tx:
            await tx.insert_item(_item())
        assert await cut_connections(postgres_url()) >= 1
        async with store.tx() as tx:
            assert await tx.get_item("a" * 32) is not None
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_connection_cut_while_in_use_fails_one_transaction_then_the_pool_is_new(
    tmp_path: Path,
) -> None:
    """A connection given back less than ``ping_idle_s`` ago is taken unchecked (under
    load that is every connection, and a check would cost three round trips per
    transaction). One the server closed fails the transaction that takes it, as one
    lost in the middle of a transaction would; the pool then replaces its connections,
    so the next transaction works."""
    import sqlalchemy as sa

    from tests.conftest import postgres_url

    await (await open_store("postgres", tmp_path)).close()
    store = Store.connect(postgres_url(), ping_idle_s=3600.0)
    try:
        async with store.tx() as tx:
            await tx.insert_item(_item())
        assert await cut_connections(postgres_url()) >= 1
        with pytest.raises(sa.exc.DBAPIError) as lost:
            async with store.tx() as tx:
                await tx.get_item("a" * 32)
        assert lost.value.connection_invalidated
        async with store.tx() as tx:
            assert await tx.get_item("a" * 32) is not None
    finally:
        await store.close()
