"""Interleavings the pipeline must survive: a change that lands while a write of an older
state is in flight. The dispatcher's steps (claim, call, record) are driven one at a time,
so the interleaving is exact, not left to timing."""

from __future__ import annotations

import asyncio

import msgspec

from app.config.schema import CreateIn, CreateRule
from app.model import Fields
from app.store import Store
from tests.rig import ALL_OPEN, FAN_OUT, STATUS_PAGE_ID, linked, running_rig, statuses


async def test_a_change_during_an_in_flight_write_is_written_after_it(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        # the issue is resolved: the three other objects are dirty, and their writes go out
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        # the vendors now hold "resolved"; before those writes are recorded, the issue
        # reopens. The links still say their objects hold "open", which is the new
        # canonical state: only the write in flight says otherwise.
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.poll("hookstream")
        await dispatcher._record(attempts)
        # no poll may repair it: the dispatcher alone must know to write again
        await dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_OPEN


async def test_the_webhook_of_an_object_the_gateway_created_before_its_record_starts_nothing(
    store: Store,
) -> None:
    """InboxOps announces a new ticket with a webhook at the moment it answers the create,
    so the webhook can be processed before the create is recorded (the recorder gathers
    finished writes for up to 10 ms). With a creation rule on InboxOps as well, the
    ticket looked like a new object: a second work item started from it, linked to it, and
    the create's record then failed on the taken object at every try. The ticket carries
    Syncgate's marker, which names the link: the engine must leave it to that link."""
    ticket_rule = CreateRule(
        name="ticket-fans-out",
        system="inboxops",
        create_in=[CreateIn(system="devhelm", scope=STATUS_PAGE_ID)],
    )
    async with running_rig(store, create_rules=[FAN_OUT, ticket_rule]) as rig:
        await rig.open_issue()
        await rig.poll("hookstream")
        await rig.gateway.worker.run_until_idle()  # the item and its three links to create
        dispatcher = rig.gateway.dispatcher
        claimed = await dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        (made,) = [a for a in attempts if a.link.system == "inboxops"]
        assert made.obj is not None and made.action == "create"
        # the ticket as its webhook shows it, processed before the creates are recorded
        ticket = await rig.gateway.adapters["inboxops"].get(made.obj.ref)
        outcome = await rig.gateway.engine.observe(ticket)
        assert outcome.kind == "ignored"
        await dispatcher._record(attempts)
        async with store.tx() as tx:
            links = await tx.links_by_id(a.link.id for a in attempts)
            _, items = await tx.search_items()
        assert items == 1  # no second work item from the ticket
        assert links[made.link.id].external_id == made.obj.ref.external_id
        assert all(link.state == "synced" for link in links.values())


async def test_the_echo_of_a_stale_write_seen_before_its_record_overwrites_no_edit(
    store: Store,
) -> None:
    """A write of an older state is in flight when a person changes the item elsewhere;
    the write lands (newer, by the vendor's clock, than the person's edit) and its echo
    (a webhook, a poll, another process's read) is seen before the write is recorded.
    The link still says the object holds the state before the write, so the echo looked
    like a person's change in that tool, newer than the edit: it won, and the edit was
    overwritten everywhere."""
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        # the person reopens the issue after the claim and before the writes land
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.poll("hookstream")
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        assert all(a.obj is not None for a in attempts)
        # the ticket's echo of the stale write, seen before the write is recorded
        await rig.poll("inboxops")
        await dispatcher._record(attempts)
        await rig.settle()
        assert await statuses(rig, ids) == ALL_OPEN


async def test_a_dead_write_leaves_no_echo_to_hide_a_later_edit_of_its_value(
    store: Store,
) -> None:
    """The vendor refused the write of a resolve: it is dead, and never landed. Once the
    item is reopened elsewhere, a person resolving the ticket by hand is a person's edit,
    not that write's echo: it wins, and the other tools are resolved."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        refused = {"status": 422, "count": 1, "methods": ["PUT", "PATCH"]}
        assert (await rig.control["inboxops"].post("/_sim/faults", json=refused)).is_success
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert (await rig.links(item_id))["inboxops"].dead
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.settle()
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.settle()
        assert (await rig.only_item()).status.value == "resolved"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"


async def test_a_claimed_write_notes_only_the_fields_it_changes(store: Store) -> None:
    """The note of what a write sends (its echo is no edit) held every field the system
    receives: a title-only write left the priority noted, and a person setting the
    priority back to that value while the write went unrecorded (a kill -9) was taken
    for the write's echo and overwritten. Found by bench/chaos.py (seed 13)."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await rig.gateway.dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        async with rig.gateway.store.tx() as tx:
            noted = {link.system: link.unconfirmed for link in await tx.links_of(item_id)}
        for system in ("devhelm", "inboxops", "incidentio"):
            assert noted[system] == [{"status": "resolved"}], (system, noted[system])


async def test_a_create_waiting_for_a_title_goes_out_once_whenever_the_title_arrives(
    store: Store,
) -> None:
    """A work item whose title is blank does not send its creates (every system it fans
    out to refuses a blank title): they wait, uncalled. The title arrives while those
    claims are still to be recorded, and then again while the creates it let out are in
    flight: each object is made once, with the item's last title."""
    async with running_rig(store) as rig:
        await rig.open_issue()
        await rig.poll("hookstream")
        item = await rig.only_item()
        engine, dispatcher = rig.gateway.engine, rig.gateway.dispatcher
        await engine.change(item.id, Fields(title="   "))
        claimed = await dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        attempts = await asyncio.gather(*(dispatcher._attempt(link, it) for link, it in claimed))
        assert all(a.waiting is not None and not a.called for a in attempts), attempts
        await engine.change(item.id, Fields(title="Checkout down"))
        await dispatcher._record(attempts)
        links = await rig.links(item.id)
        assert {
            s: (link.state, link.external_id) for s, link in links.items() if s != "hookstream"
        } == {s: ("pending", None) for s in ("devhelm", "inboxops", "incidentio")}
        assert all(link.create_payload is None for s, link in links.items() if s != "hookstream")

        claimed = await dispatcher._claim(10)
        attempts = await asyncio.gather(*(dispatcher._attempt(link, it) for link, it in claimed))
        assert {a.link.system for a in attempts if a.action == "create" and a.obj} == {
            "devhelm",
            "inboxops",
            "incidentio",
        }
        await engine.change(item.id, Fields(title="Checkout down in the EU"))
        await dispatcher._record(attempts)
        await dispatcher.run_until_idle()
        for system, name in (
            ("devhelm", "title"),
            ("inboxops", "subject"),
            ("incidentio", "title"),
        ):
            made = [o[name] for o in await rig.objects(system)]
            assert made == ["Checkout down in the EU"], (system, made)
        links = await rig.links(item.id)
        assert all(link.state == "synced" for link in links.values()), links


async def test_a_write_whose_read_failed_leaves_no_echo_to_hide_a_later_edit_of_its_value(
    store: Store,
) -> None:
    """A write's claim notes the state it will send (its echo is no edit); its read
    before the write failed (DevHelm answered 500), so nothing was sent. The note stayed:
    once the item was reopened elsewhere, a person resolving the incident by hand was
    taken for that write's echo, dropped without a trace, and the incident written back.
    Found by bench/chaos.py (three processes on PostgreSQL, seed 307: the read answered
    429)."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        failing_read = {"status": 500, "count": 1, "methods": ["GET"]}
        assert (await rig.control["devhelm"].post("/_sim/faults", json=failing_read)).is_success
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await dispatcher._claim(10)
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        (devhelm,) = [a for a in attempts if a.link.system == "devhelm"]
        assert devhelm.error is not None and not devhelm.called
        await dispatcher._record(attempts)
        # reopened in hookstream: DevHelm never left INVESTIGATING, which holds it
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.poll("hookstream")
        assert (await rig.only_item()).status.value == "open"
        # a person resolves the incident: the write that would have sent RESOLVED never did
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        await rig.poll("devhelm")
        assert (await rig.only_item()).status.value == "resolved"
        await rig.settle()
        assert (await rig.links(item_id))["devhelm"].unconfirmed in (None, [])
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] in ("resolved", "closed")
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"


async def test_a_person_setting_the_value_a_claimed_write_will_send_is_not_its_echo(
    store: Store,
) -> None:
    """A ticket is closed; the DevHelm write is claimed, noting the state it will send
    (RESOLVED, for closed). Before its read, a person resolves the incident by hand:
    RESOLVED, meaning resolved, a later change than the close. The read before the
    write found the value just noted and took it for that write's echo, though the
    write had not been sent: the person's resolve was dropped without a trace, and the
    ticket stayed closed. Found by bench/chaos.py (three processes, seed 312)."""
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        await rig.human("inboxops", ids["inboxops"], status="closed")
        await rig.poll("inboxops")
        assert (await rig.only_item()).status.value == "closed"
        claimed = await dispatcher._claim(10)
        assert "devhelm" in {link.system for link, _ in claimed}
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        await dispatcher._record(attempts)
        assert (await rig.only_item()).status.value == "resolved"
        await rig.settle()
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "resolved"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"


async def test_a_late_webhook_does_not_make_an_older_edit_look_made_on_top(
    store: Store,
) -> None:
    """A person closes the ticket; later another resolves it (webhook held up), and a
    third person cancels the follow-up, the newest edit: the item is cancelled, which
    the ticket's "closed" holds. A late copy of the ticket's "closed" view is handled
    after that (a webhook retried, or handled by another process). It counted as the
    ticket seen holding the item's value after its last change, so the older resolve
    was taken as made on top of it and beat the newer cancel, with no conflict entry.
    A webhook's view moves nothing of when the object was last seen (bench.chaos,
    three processes, seed 302)."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        engine = rig.gateway.engine
        inboxops = rig.gateway.adapters["inboxops"]
        links = await rig.links(item_id)
        ticket_ref = links["inboxops"].ref
        assert ticket_ref is not None
        await rig.human("inboxops", ids["inboxops"], status="closed")
        closed = await inboxops.get(ticket_ref)  # a webhook's view: no read_at
        await engine.observe_many([(closed, "inboxops:closed")])
        assert (await rig.only_item()).status.value == "closed"
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        resolved = await inboxops.get(ticket_ref)
        await rig.human("incidentio", ids["incidentio"], status="not_doing")
        await rig.poll("incidentio")
        assert (await rig.only_item()).status.value == "cancelled"
        await engine.observe_many([(closed, "inboxops:closed-again")])  # the late copy
        await engine.observe_many([(resolved, "inboxops:resolved")])
        item = await rig.only_item()
        assert item.status.value == "cancelled"
        async with store.tx() as tx:
            detail = await tx.history_of(item_id)
        lost = [h for h in detail if h.kind == "conflict_lost" and h.system == "inboxops"]
        assert [h.new_value for h in lost] == ["resolved"], detail


async def test_a_poll_read_begun_before_a_webhooks_change_does_not_undo_it(
    store: Store,
) -> None:
    """A poll reads the ticket (open); the ticket is resolved, and its webhook is handled
    first; then the poll's page, dated before the resolve, is handled. The link had
    recorded the webhook's view but not when (a webhook's view does not move when the
    object was last seen), so the read, begun "after the link last recorded it", was
    taken for a vendor clock stepped back and undid the resolve everywhere
    (tests/test_bench_chaos.py, two processes, seed 100). It is dropped as older."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        engine = rig.gateway.engine
        inboxops = rig.gateway.adapters["inboxops"]
        ticket_ref = (await rig.links(item_id))["inboxops"].ref
        assert ticket_ref is not None
        began = rig.gateway.clock()
        polled = msgspec.structs.replace(await inboxops.get(ticket_ref), read_at=began)
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        webhook_view = await inboxops.get(ticket_ref)  # no read_at: a webhook's
        await engine.observe_many([(webhook_view, "inboxops:resolved")])
        assert (await rig.only_item()).status.value == "resolved"
        await engine.observe_many([(polled, "poll-late")])
        assert (await rig.only_item()).status.value == "resolved"
