"""The engine on a real store (SQLite and PostgreSQL) with hand-built vendor objects: no
adapters, no simulators. Assertions are on what the store holds afterwards: work items,
links and history. The made-up systems and their value maps are those of
``tests/test_rules.py``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.config.schema import CreateIn, CreateRule, FieldRule, LinkKey, LinkRule
from app.engine import Engine, origin_item_id
from app.errors import AlreadyLinked, Invalid, Missing
from app.model import Fields, FieldStamp, Priority, Status, ValueMap, VendorObject, WorkItem
from app.rules import Rules
from app.store import HistoryEntry, Link, Store
from tests.rules_support import CAPS, MAPS, SYSTEMS, T0, settings, vendor

SECOND = timedelta(seconds=1)

FAN_OUT = CreateRule(
    name="tracker-fans-out",
    system="tracker",
    create_in=[CreateIn(system="pages", scope="sp-1"), CreateIn(system="desk")],
)
FIELDS = {"title": FieldRule(owner="tracker"), "description": FieldRule(owner="tracker")}


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now


def make_engine(store: Store, **kwargs: Any) -> tuple[Engine, Clock]:
    kwargs.setdefault("create_rules", [FAN_OUT])
    kwargs.setdefault("fields", FIELDS)
    clock = Clock()
    engine = Engine(store, Rules(settings(**kwargs), CAPS, MAPS), clock=clock)
    # connected a day before the objects of these tests were made: they are all new
    engine.connected = {system: T0 - timedelta(days=1) for system in SYSTEMS}
    return engine, clock


def issue(at: datetime = T0, **overrides: Any) -> VendorObject:
    values: dict[str, Any] = {
        "status": "open",
        "priority": "high",
        "title": "Disk full",
        "snoozed_until": None,
    }
    return vendor("tracker", "T-1", at, **(values | overrides))


def incident(at: datetime, external_id: str = "P-1", **overrides: Any) -> VendorObject:
    values: dict[str, Any] = {"status": "INVESTIGATING", "priority": "MAJOR", "title": "Disk full"}
    return vendor("pages", external_id, at, scope="sp-1", **(values | overrides))


def ticket(at: datetime, external_id: str = "D-1", **overrides: Any) -> VendorObject:
    values: dict[str, Any] = {"status": "new", "priority": "high", "title": "Disk full"}
    return vendor("desk", external_id, at, **(values | overrides))


async def item_of(store: Store, item_id: str) -> WorkItem:
    async with store.tx() as tx:
        item = await tx.get_item(item_id)
    assert item is not None
    return item


async def links_of(store: Store, item_id: str) -> dict[str, Link]:
    async with store.tx() as tx:
        return {link.system: link for link in await tx.links_of(item_id)}


async def history(store: Store, item_id: str) -> list[HistoryEntry]:
    async with store.tx() as tx:
        return await tx.history_of(item_id)


async def written(store: Store, link: Link, obj: VendorObject, version: int, now: datetime) -> None:
    """Record what the dispatcher would after writing ``obj`` to ``link``."""
    async with store.tx() as tx:
        await tx.finish_write(link, obj, version=version, now=now)


async def synced(store: Store, engine: Engine, clock: Clock) -> str:
    """A work item started by tracker issue T-1 at T0, whose pages and desk objects have
    been created (at T0 + 1s) holding its state: no link is dirty."""
    outcome = await engine.observe(issue())
    assert outcome.kind == "created" and outcome.work_item_id is not None
    item_id = outcome.work_item_id
    links = await links_of(store, item_id)
    await written(store, links["pages"], incident(T0 + SECOND), 1, clock())
    await written(store, links["desk"], ticket(T0 + SECOND), 1, clock())
    links = await links_of(store, item_id)
    assert not any(link.dirty for link in links.values())
    return item_id


def dirty(links: dict[str, Link]) -> dict[str, int]:
    """The dirty links, by system, with the version each must reach."""
    return {system: link.dirty_version for system, link in links.items() if link.dirty}


# -- observations --------------------------------------------------------------------------


async def test_a_new_object_matching_a_rule_starts_an_item_with_links_to_create(
    store: Store,
) -> None:
    engine, _ = make_engine(store)
    outcome = await engine.observe(issue(description="the disk is full"), event_id="e-1")
    assert outcome.kind == "created" and outcome.work_item_id is not None
    item = await item_of(store, outcome.work_item_id)
    assert (item.title, item.description, item.status, item.priority, item.version) == (
        "Disk full",
        "the disk is full",
        Status.OPEN,
        Priority.HIGH,
        1,
    )
    assert item.stamps["status"] == FieldStamp("tracker", T0)
    links = await links_of(store, item.id)
    assert set(links) == {"tracker", "pages", "desk"}
    assert links["tracker"].external_id == "T-1" and not links["tracker"].dirty
    assert links["tracker"].known == issue(description="the disk is full")
    for system in ("pages", "desk"):
        assert links[system].external_id is None
        assert links[system].create_target is not None
    assert links["pages"].create_target is not None
    assert links["pages"].create_target.scope == "sp-1"
    assert dirty(links) == {"pages": 1, "desk": 1}
    assert set(outcome.dirty_links) == {links["pages"].id, links["desk"].id}
    [created] = await history(store, item.id)
    assert (created.kind, created.system, created.event_id) == ("created", "tracker", "e-1")


async def test_a_nul_in_a_vendors_text_is_read_without_it_on_either_database(
    store: Store,
) -> None:
    """PostgreSQL takes no NUL in a text column: a vendor's title or description holding
    one (JSON "\\u0000") is read without it, so the item is stored on both databases, and
    the object holds its text: nothing is written back to take the NUL out."""
    engine, _ = make_engine(store)
    observed = issue(title="Disk\x00 full", description="the\x00 disk")
    assert (observed.fields.title, observed.fields.description) == ("Disk full", "the disk")
    outcome = await engine.observe(observed, event_id="e-1")
    assert outcome.kind == "created" and outcome.work_item_id is not None
    item = await item_of(store, outcome.work_item_id)
    assert (item.title, item.description) == ("Disk full", "the disk")
    links = await links_of(store, item.id)
    assert not links["tracker"].dirty and links["tracker"].known == observed


async def test_creation_rules_act_only_on_objects_made_since_the_connection(
    store: Store,
) -> None:
    engine, clock = make_engine(store)
    engine.connected = {}  # connected by the first need: the engine's now, T0 + 1h
    made_before = issue(T0, created_at=T0)
    assert (await engine.observe(made_before)).kind == "ignored"
    unknown_age = vendor("tracker", "T-2", clock.now + SECOND, created_at=None, status="open")
    assert (await engine.observe(unknown_age)).kind == "ignored"
    async with store.tx() as tx:
        assert (await tx.search_items())[1] == 0
        assert (await tx.system_state("tracker")).connected_at == clock.now
    clock.now += timedelta(hours=1)  # the stored moment stays, whatever the clock says
    made_after = vendor(
        "tracker", "T-3", T0 + 90 * timedelta(minutes=1), created_at=T0 + timedelta(minutes=90)
    )
    outcome = await engine.observe(made_after)
    assert outcome.kind == "created"
    assert outcome.work_item_id == origin_item_id(made_after.ref)
    # inside a backfill window an old object may start an item
    (backfilled,) = await engine.observe_many([(made_before, "backfill")], backfill=True)
    assert backfilled.kind == "created"


async def test_an_object_no_rule_matches_starts_nothing(store: Store) -> None:
    engine, _ = make_engine(store)
    assert (await engine.observe(incident(T0))).kind == "ignored"
    assert (await engine.observe(ticket(T0))).kind == "ignored"
    async with store.tx() as tx:
        assert (await tx.search_items())[1] == 0


async def test_a_disabled_system_gets_no_link_to_create(store: Store) -> None:
    engine, _ = make_engine(store, disabled=("desk",))
    outcome = await engine.observe(issue())
    assert outcome.work_item_id is not None
    assert set(await links_of(store, outcome.work_item_id)) == {"tracker", "pages"}


async def test_an_echo_changes_nothing(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    # the pages object read back as it was written, later
    outcome = await engine.observe(incident(T0 + 5 * SECOND))
    assert outcome.kind == "unchanged"
    assert (await item_of(store, item_id)).version == 1
    assert dirty(await links_of(store, item_id)) == {}
    assert [e.kind for e in await history(store, item_id)] == ["created"]


async def test_an_echo_in_another_spelling_of_the_same_meaning_changes_nothing(
    store: Store,
) -> None:
    """desk sets waiting; pages can only say IDENTIFIED, which reads as acknowledged but
    also means waiting: reading it back must not turn waiting into acknowledged, nor make
    pages look like it needs another write."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    assert (await engine.observe(ticket(T0 + 10 * SECOND, status="pending"))).kind == "changed"
    assert (await item_of(store, item_id)).status == Status.WAITING
    links = await links_of(store, item_id)
    assert dirty(links) == {"pages": 2, "tracker": 2}
    await written(store, links["tracker"], issue(T0 + 11 * SECOND, status="waiting"), 2, clock())

    # the write to pages was claimed, noting the state it sends (as the dispatcher's
    # claim does), and landed; its webhook arrives before the write is recorded
    async with store.tx() as tx:
        await tx.save_unconfirmed({links["pages"].id: [{"status": "waiting"}]})
    echo = incident(T0 + 12 * SECOND, status="IDENTIFIED")
    outcome = await engine.observe(echo)
    assert outcome.kind == "unchanged"
    item = await item_of(store, item_id)
    assert (item.status, item.version) == (Status.WAITING, 2)
    await written(store, links["pages"], echo, 2, clock())
    assert dirty(await links_of(store, item_id)) == {}

    # a change pages does not receive leaves pages alone: IDENTIFIED holds waiting
    snoozed = issue(T0 + 30 * SECOND, status="waiting", snoozed_until=T0 + timedelta(hours=4))
    assert (await engine.observe(snoozed)).changed == ("snoozed_until",)
    assert dirty(await links_of(store, item_id)) == {}


async def test_a_stale_observation_is_dropped(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    outcome = await engine.observe(ticket(T0 + 5 * SECOND, status="working"))
    assert outcome.kind == "stale"
    assert (await item_of(store, item_id)).status == Status.RESOLVED
    desk = (await links_of(store, item_id))["desk"]
    assert desk.vendor_updated_at == T0 + 10 * SECOND
    assert desk.known is not None and desk.known.native["status"] == "solved"


async def test_a_change_read_after_the_last_record_but_dated_before_it_is_applied(
    store: Store,
) -> None:
    """The desk's clock stepped back: a person's change made after the gateway recorded
    the ticket is dated before it. A read begun after that record shows the ticket as of
    then or later, so the change is the newer one: it is applied (dated just after what
    was seen), not dropped as stale."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    clock.now += SECOND
    read = msgspec.structs.replace(ticket(T0 + 5 * SECOND, status="working"), read_at=clock())
    outcome = await engine.observe(read, event_id="poll-1")
    assert (outcome.kind, outcome.changed) == ("changed", ("status",))
    item = await item_of(store, item_id)
    assert item.status == Status.ACKNOWLEDGED
    after = T0 + 10 * SECOND + timedelta(microseconds=1)
    assert item.stamps["status"] == FieldStamp("desk", after)
    desk = (await links_of(store, item_id))["desk"]
    assert desk.vendor_updated_at == after
    assert desk.known is not None and desk.known.native["status"] == "working"
    # a late copy of the solved ticket is older than that now, and changes nothing
    outcome = await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    assert outcome.kind == "stale"
    assert (await item_of(store, item_id)).status == Status.ACKNOWLEDGED


@pytest.mark.parametrize("how", ["webhook", "read begun before the record"])
async def test_a_change_dated_before_the_last_record_that_cannot_be_dated_is_read_again(
    store: Store, how: str
) -> None:
    """A change dated before what was seen of the ticket, from a webhook (or a read begun
    before the gateway recorded the ticket), is a late delivery or a stepped-back clock:
    not applied, and the link is marked, so the ticket is read again before a write."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    links = await links_of(store, item_id)
    assert not links["desk"].dirty
    seen = ticket(T0 + 5 * SECOND, status="working")
    if how != "webhook":
        seen = msgspec.structs.replace(seen, read_at=clock() - SECOND)
    clock.now += SECOND
    outcome = await engine.observe(seen)
    assert (outcome.kind, outcome.dirty_links) == ("stale", (links["desk"].id,))
    assert (await item_of(store, item_id)).status == Status.RESOLVED
    desk = (await links_of(store, item_id))["desk"]
    # read though the write has nothing to send: the view says so, as it was seen
    assert desk.dirty and desk.known is not None and desk.known.reread
    assert desk.known.native["status"] == "solved"
    assert desk.vendor_updated_at == T0 + 10 * SECOND
    # a later webhook's view keeps the mark: only a read settles it
    await engine.observe(ticket(T0 + 20 * SECOND, status="solved"))
    desk = (await links_of(store, item_id))["desk"]
    assert desk.known is not None and desk.known.reread
    assert [h.kind for h in await history(store, item_id)].count("stale") == 0


async def test_an_older_change_not_read_again_is_in_the_history(store: Store) -> None:
    """Without ``refresh_before_write`` no read will settle it: the change dated before
    what was seen is not applied, and the history says so, with both times."""
    base = settings(create_rules=[FAN_OUT], fields=FIELDS)
    systems = dict(base.systems)
    systems["desk"] = msgspec.structs.replace(systems["desk"], refresh_before_write=False)
    clock = Clock()
    engine = Engine(
        store, Rules(msgspec.structs.replace(base, systems=systems), CAPS, MAPS), clock=clock
    )
    engine.connected = {system: T0 - timedelta(days=1) for system in SYSTEMS}
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    outcome = await engine.observe(ticket(T0 + 5 * SECOND, status="working"), event_id="e-9")
    assert (outcome.kind, outcome.dirty_links) == ("stale", ())
    (entry,) = [h for h in await history(store, item_id) if h.kind == "stale"]
    assert (entry.system, entry.event_id) == ("desk", "e-9")
    assert entry.detail is not None and "D-1 showed a change dated" in entry.detail
    assert "clock stepped back" in entry.detail
    # an older copy of what was seen is no change: nothing more
    await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))
    await engine.observe(ticket(T0 + 6 * SECOND, status="solved"))
    assert [h.kind for h in await history(store, item_id)].count("stale") == 1


async def test_a_newer_vendor_change_wins_and_marks_the_other_links_dirty(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    at = T0 + 10 * SECOND
    outcome = await engine.observe(incident(at, status="MONITORING"), event_id="e-2")
    assert (outcome.kind, outcome.changed) == ("changed", ("status",))
    item = await item_of(store, item_id)
    assert (item.status, item.version) == (Status.MONITORING, 2)
    assert item.stamps["status"] == FieldStamp("pages", at)
    links = await links_of(store, item_id)
    assert dirty(links) == {"tracker": 2, "desk": 2}
    assert links["pages"].known is not None
    assert links["pages"].known.native["status"] == "MONITORING"
    change = (await history(store, item_id))[-1]
    assert (change.kind, change.field, change.old_value, change.new_value) == (
        "change",
        "status",
        "open",
        "monitoring",
    )
    assert (change.system, change.event_id) == ("pages", "e-2")


async def test_a_losing_change_is_recorded_with_its_value(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 20 * SECOND, status="solved"))
    assert dirty(await links_of(store, item_id)) == {"pages": 2, "tracker": 2}

    # made in pages before the resolve, seen after it (before pages was written)
    outcome = await engine.observe(incident(T0 + 15 * SECOND, status="MONITORING"))
    assert outcome.kind == "unchanged"
    item = await item_of(store, item_id)
    assert (item.status, item.version) == (Status.RESOLVED, 2)
    lost = (await history(store, item_id))[-1]
    assert (lost.kind, lost.field, lost.system) == ("conflict_lost", "status", "pages")
    assert (lost.old_value, lost.new_value) == ("resolved", "monitoring")
    # the loser's object is still to be written with the winning state
    pages = (await links_of(store, item_id))["pages"]
    assert pages.dirty and pages.known is not None
    assert pages.known.native["status"] == "MONITORING"


async def test_a_change_made_on_top_of_the_items_value_wins_whatever_the_clocks_say(
    store: Store,
) -> None:
    """desk's clock runs behind: the write of pages' MONITORING (made at T0+20s by pages'
    clock) lands there stamped T0+2s, and a person's resolve on top of it is stamped
    T0+3s. By time it lost and was reverted; made on an object that held the item's
    value, it is the later change, and wins. A change made where the item's value had
    not arrived yet is still settled by time (``test_a_losing_change_...``)."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(incident(T0 + 20 * SECOND, status="MONITORING"))
    desk = (await links_of(store, item_id))["desk"]
    clock.now += SECOND  # the write lands after the item's change, by the gateway's clock
    await written(store, desk, ticket(T0 + 2 * SECOND, status="working"), 2, clock())
    outcome = await engine.observe(ticket(T0 + 3 * SECOND, status="solved"))
    assert (outcome.kind, outcome.changed) == ("changed", ("status",))
    item = await item_of(store, item_id)
    assert item.status == Status.RESOLVED
    assert item.stamps["status"] == FieldStamp("desk", T0 + 3 * SECOND)
    assert not [e for e in await history(store, item_id) if e.kind == "conflict_lost"]
    assert dirty(await links_of(store, item_id)) == {"pages": 3, "tracker": 3}


async def test_a_change_to_another_value_that_still_holds_the_item_is_a_change(
    store: Store,
) -> None:
    """pages MONITORING also holds canonical acknowledged, but reads as monitoring: moved
    there from IDENTIFIED by a person, it is a change (stamped), even with a write of the
    item's state unconfirmed (it would send IDENTIFIED, never MONITORING), and a change
    made before it and heard of later loses to it."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(ticket(T0 + 10 * SECOND, status="working"))
    pages = (await links_of(store, item_id))["pages"]
    await written(store, pages, incident(T0 + 11 * SECOND, status="IDENTIFIED"), 2, clock())
    async with store.tx() as tx:  # a write of the item's state claimed, not answered
        await tx.save_unconfirmed({pages.id: [{"status": "acknowledged", "title": "Disk full"}]})
    outcome = await engine.observe(incident(T0 + 30 * SECOND, status="MONITORING"))
    assert (outcome.kind, outcome.changed) == ("changed", ("status",))
    item = await item_of(store, item_id)
    assert item.status == Status.MONITORING
    assert item.stamps["status"] == FieldStamp("pages", T0 + 30 * SECOND)
    outcome = await engine.observe(ticket(T0 + 20 * SECOND, status="solved"))
    assert outcome.kind == "unchanged"
    assert (await item_of(store, item_id)).status == Status.MONITORING
    lost = (await history(store, item_id))[-1]
    assert (lost.kind, lost.system, lost.new_value) == ("conflict_lost", "desk", "resolved")


async def test_an_unmapped_value_is_reported_once_and_not_applied(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    outcome = await engine.observe(
        incident(T0 + 10 * SECOND, status="POSTMORTEM", priority="CRITICAL")
    )
    assert (outcome.kind, outcome.changed) == ("changed", ("priority",))
    item = await item_of(store, item_id)
    assert (item.status, item.priority) == (Status.OPEN, Priority.URGENT)
    await engine.observe(incident(T0 + 11 * SECOND, status="POSTMORTEM", priority="CRITICAL"))
    unmapped = [e for e in await history(store, item_id) if e.kind == "unmapped"]
    assert [(e.field, e.new_value, e.system) for e in unmapped] == [
        ("status", "POSTMORTEM", "pages")
    ]


async def test_an_object_holding_an_unmapped_value_is_written_only_once_the_item_changes(
    store: Store,
) -> None:
    """The incident's POSTMORTEM has no canonical status: the link keeps the item's
    status it was set against (``held``), so the incident is not written back to it, also
    when it is read again; once the item's status changes, the incident gets it."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    await engine.observe(incident(T0 + 10 * SECOND, status="POSTMORTEM"))
    await engine.observe(incident(T0 + 11 * SECOND, status="POSTMORTEM", priority="CRITICAL"))
    pages = (await links_of(store, item_id))["pages"]
    assert pages.known is not None and pages.known.held == {"status": "open"}
    assert "pages" not in dirty(await links_of(store, item_id))  # its priority went out
    await engine.observe(ticket(T0 + 12 * SECOND, status="solved", priority="urgent"))
    assert dirty(await links_of(store, item_id))["pages"] == 3


async def test_an_unmapped_value_starts_no_item(store: Store) -> None:
    engine, _ = make_engine(store)
    odd = issue(status="triage")
    assert odd.unmapped == {"status": "triage"}
    assert (await engine.observe(odd)).kind == "ignored"
    async with store.tx() as tx:
        assert (await tx.search_items())[1] == 0


async def test_a_vendor_time_in_the_future_is_clamped(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    engine, clock = make_engine(store, max_clock_skew_s=300)
    item_id = await synced(store, engine, clock)
    now = clock.now
    with caplog.at_level(logging.WARNING, logger="syncgate.engine"):
        for _ in range(3):  # read again by every poll: warned of once
            await engine.observe(incident(now + timedelta(days=1), status="MONITORING"))
    warned = [r for r in caplog.records if r.getMessage().startswith("vendor time in the future")]
    assert len(warned) == 1
    pages = (await links_of(store, item_id))["pages"]
    assert pages.vendor_updated_at == now
    assert (await item_of(store, item_id)).stamps["status"] == FieldStamp("pages", now)
    # a real change a minute later is not taken for stale
    clock.now = now + timedelta(minutes=2)
    outcome = await engine.observe(incident(now + timedelta(minutes=1), status="RESOLVED"))
    assert outcome.kind == "changed"
    assert (await item_of(store, item_id)).status == Status.RESOLVED
    # within the allowed skew a vendor time is kept
    within = clock.now + timedelta(seconds=200)
    await engine.observe(incident(within, status="IDENTIFIED"))
    assert (await links_of(store, item_id))["pages"].vendor_updated_at == within


async def test_swapped_rules_compare_through_their_own_maps(store: Store) -> None:
    """A config reload replaces ``engine.rules``: from then on its maps decide which
    objects already hold the canonical state."""
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    # the override says an INVESTIGATING incident already means acknowledged too
    override = ValueMap(inbound={}, outbound={"acknowledged": ["INVESTIGATING"]})
    maps = {**MAPS, "pages": {**MAPS["pages"]}}
    maps["pages"]["status"] = MAPS["pages"]["status"].merged(override)
    engine.rules = Rules(engine.rules.settings, CAPS, maps)
    await engine.change(item_id, Fields(status=Status.ACKNOWLEDGED))
    assert dirty(await links_of(store, item_id)) == {"tracker": 2, "desk": 2}


# -- operator changes ----------------------------------------------------------------------


async def test_create_item_links_the_objects_to_receive_its_state(store: Store) -> None:
    engine, _ = make_engine(store)
    objects = [incident(T0, "P-9"), ticket(T0, "D-9")]
    fields = Fields(title="Manual", status=Status.ACKNOWLEDGED)
    item_id = await engine.create_item(fields, objects)
    item = await item_of(store, item_id)
    assert (item.title, item.status, item.version) == ("Manual", Status.ACKNOWLEDGED, 1)
    links = await links_of(store, item_id)
    assert {s: link.external_id for s, link in links.items()} == {"pages": "P-9", "desk": "D-9"}
    assert dirty(links) == {"pages": 1, "desk": 1}
    assert [e.kind for e in await history(store, item_id)] == ["created", "linked", "linked"]
    with pytest.raises(Invalid):
        await engine.create_item(fields, [incident(T0, "P-8"), incident(T0, "P-8")])


async def test_link_adds_an_object_and_refuses_one_linked_elsewhere(store: Store) -> None:
    engine, clock = make_engine(store)
    first = await synced(store, engine, clock)
    second = await engine.create_item(Fields(title="Other"), [])
    [link_id] = await engine.link(second, [incident(T0, "P-20")])
    links = await links_of(store, second)
    assert links["pages"].id == link_id and links["pages"].external_id == "P-20"
    assert dirty(links) == {"pages": 1}
    with pytest.raises(AlreadyLinked) as raised:
        await engine.link(second, [incident(T0, "P-1")])
    assert raised.value.owner == first
    assert set(await links_of(store, second)) == {"pages"}
    assert (await links_of(store, first))["pages"].external_id == "P-1"
    with pytest.raises(Missing):
        await engine.link("no-such-item", [incident(T0, "P-21")])


async def test_unlink_removes_the_link_and_later_observations_are_ignored(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    desk = (await links_of(store, item_id))["desk"]
    removed = await engine.unlink(desk.id)
    assert removed.id == desk.id
    assert set(await links_of(store, item_id)) == {"tracker", "pages"}
    assert (await history(store, item_id))[-1].kind == "unlinked"
    assert (await engine.observe(ticket(T0 + 10 * SECOND, status="solved"))).kind == "ignored"
    assert (await item_of(store, item_id)).status == Status.OPEN
    with pytest.raises(Missing):
        await engine.unlink(desk.id)


async def test_relink_moves_a_link_and_starts_its_versions_afresh(store: Store) -> None:
    engine, clock = make_engine(store)
    first = await synced(store, engine, clock)
    await engine.observe(incident(T0 + 10 * SECOND, status="MONITORING"))
    await engine.observe(incident(T0 + 20 * SECOND, status="RESOLVED"))
    assert (await item_of(store, first)).version == 3
    second = await engine.create_item(Fields(title="Other"), [])
    desk = (await links_of(store, first))["desk"]
    assert desk.dirty_version == 3

    before = await engine.relink(desk.id, second)
    assert before.work_item_id == first
    moved = (await links_of(store, second))["desk"]
    target = await item_of(store, second)
    assert (moved.id, moved.dirty, moved.dirty_version, moved.synced_version) == (
        desk.id,
        True,
        target.version,
        0,
    )
    assert "desk" not in await links_of(store, first)
    assert (await history(store, first))[-1].kind == "unlinked"
    assert (await history(store, second))[-1].kind == "linked"
    with pytest.raises(Missing):
        await engine.relink(desk.id, "no-such-item")


async def test_change_wins_and_propagates_and_an_unknown_item_is_missing(store: Store) -> None:
    engine, clock = make_engine(store)
    item_id = await synced(store, engine, clock)
    outcome = await engine.change(item_id, Fields(status=Status.CLOSED))
    assert (outcome.kind, outcome.changed) == ("changed", ("status",))
    item = await item_of(store, item_id)
    assert (item.status, item.version) == (Status.CLOSED, 2)
    assert item.stamps["status"] == FieldStamp("admin", clock.now)
    assert dirty(await links_of(store, item_id)) == {"tracker": 2, "pages": 2, "desk": 2}
    assert (await engine.change(item_id, Fields(status=Status.CLOSED))).kind == "unchanged"
    with pytest.raises(Missing):
        await engine.change("no-such-item", Fields(status=Status.CLOSED))


# -- link rules ------------------------------------------------------------------------------

#: A desk ticket whose title carries the tracker issue's "service" in brackets.
BY_SERVICE = LinkRule(
    name="service-in-title",
    left=LinkKey(system="tracker", path="service"),
    right=LinkKey(system="desk", path="subject", regex=r"\[(\w+)\]"),
)


def tracked(external_id: str, service: str, at: datetime = T0) -> VendorObject:
    return vendor(
        "tracker", external_id, at, raw={"service": service}, status="open", title="Disk full"
    )


def customer_ticket(external_id: str, subject: str, at: datetime = T0) -> VendorObject:
    return vendor("desk", external_id, at, raw={"subject": subject}, status="new", title=subject)


async def test_a_link_rule_links_an_unlinked_object_instead_of_creating_one(
    store: Store,
) -> None:
    engine, _ = make_engine(store, link_rules=[BY_SERVICE])
    assert (await engine.observe(customer_ticket("D-7", "[db] slow"))).kind == "ignored"
    outcome = await engine.observe(tracked("T-7", "db"))
    assert outcome.kind == "created" and outcome.work_item_id is not None
    links = await links_of(store, outcome.work_item_id)
    assert links["desk"].external_id == "D-7"  # linked, not to be created
    assert links["pages"].external_id is None  # the other target is still created
    assert dirty(links) == {"pages": 1, "desk": 1}
    [entry] = [h for h in await history(store, outcome.work_item_id) if h.kind == "linked"]
    assert entry.detail == "link rule 'service-in-title' linked desk D-7"
    # a later ticket about the same service joins the item
    later = await engine.observe(customer_ticket("D-8", "[db] still slow", T0 + SECOND))
    assert (later.kind, later.work_item_id) == ("linked", outcome.work_item_id)


async def test_a_nul_in_a_link_rules_field_is_read_without_it_on_either_database(
    store: Store,
) -> None:
    """A link rule reads the vendor's raw JSON, where a NUL (JSON "\\u0000") is left as
    sent: its key is read without it, as the texts are, so the key is indexed on
    PostgreSQL (no text column takes a NUL) and matches the same key spelled without."""
    engine, _ = make_engine(store, link_rules=[BY_SERVICE])
    assert (await engine.observe(customer_ticket("D-7", "[d\x00b] slow"))).kind == "ignored"
    outcome = await engine.observe(tracked("T-7", "db\x00"))
    assert outcome.kind == "created" and outcome.work_item_id is not None
    links = await links_of(store, outcome.work_item_id)
    assert links["desk"].external_id == "D-7"


async def test_an_ambiguous_match_links_nothing_creates_nothing_and_is_reported_once(
    store: Store,
) -> None:
    engine, _ = make_engine(store, link_rules=[BY_SERVICE])
    first = await engine.observe(tracked("T-1", "db"))
    second = await engine.observe(tracked("T-2", "db"))
    assert first.work_item_id and second.work_item_id and first.kind == second.kind == "created"
    ticket = customer_ticket("D-9", "[db] which one?")
    assert (await engine.observe(ticket)).kind == "ambiguous"
    assert (await engine.observe(ticket)).kind == "ambiguous"  # seen again
    async with store.tx() as tx:
        assert await tx.link_for(ticket.ref) is None
    for item_id in (first.work_item_id, second.work_item_id):
        entries = [h for h in await history(store, item_id) if h.kind == "ambiguous_match"]
        assert len(entries) == 1, entries  # reported once, not at every observation
        assert "desk D-9 matches several candidates" in (entries[0].detail or "")
    # an ambiguous object that a creation rule matches is not created either
    engine.rules = Rules(
        settings(create_rules=[FAN_OUT], fields=FIELDS, link_rules=[BY_SERVICE]), CAPS, MAPS
    )
    await engine.observe(customer_ticket("D-10", "[web] down"))
    await engine.observe(customer_ticket("D-11", "[web] down too"))
    assert (await engine.observe(tracked("T-3", "web"))).kind == "ambiguous"
