"""The convergent sync, end to end through the engine and dispatcher, against the four
simulators, on SQLite and PostgreSQL. Assertions are on vendor state and request counts."""

from __future__ import annotations

import pytest

from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID
from app.config.schema import (
    Conflict,
    CreateIn,
    CreateRule,
    Direction,
    FieldRule,
    Match,
    ValueMapSettings,
)
from app.model import Fields, Priority, Status
from app.store import Store
from tests.rig import (
    ALL_OPEN,
    ALL_RESOLVED,
    DEFAULT_FIELDS,
    Rig,
    linked,
    running_rig,
    statuses,
)


async def test_new_issue_creates_and_links_objects_everywhere(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        issue = await rig.object("hookstream", ids["hookstream"])
        incident = await rig.object("devhelm", ids["devhelm"])
        ticket = await rig.object("inboxops", ids["inboxops"])
        follow_up = await rig.object("incidentio", ids["incidentio"])
        assert incident["title"] == ticket["subject"] == follow_up["title"] == issue["title"]
        assert (incident["status"], ticket["status"], follow_up["status"]) == (
            "INVESTIGATING",
            "open",
            "outstanding",
        )
        assert incident["statusPageId"] and follow_up["incident_id"]


async def test_resolve_propagates_and_reopen_follows(store: Store) -> None:
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        await rig.human("inboxops", ids["inboxops"], status="open")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_OPEN


async def test_each_change_writes_each_linked_object_once_and_echoes_write_nothing(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        before = await rig.write_counts()
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert await rig.writes_since(before) == {
            "hookstream": 0,
            "devhelm": 1,
            "inboxops": 1,
            "incidentio": 1,
        }
        # the echoes of those writes are polled again and again: nothing more is written
        after = await rig.write_counts()
        for _ in range(3):
            await rig.poll()
            await rig.gateway.dispatcher.run_until_idle()
        assert await rig.write_counts() == after


async def test_many_to_one_map_never_downgrades(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        await rig.human("devhelm", ids["devhelm"], status="MONITORING")
        await rig.settle()
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "in_progress"
        devhelm_writes = (await rig.write_counts())["devhelm"]
        # a person moves the ticket to waiting, then back to in progress
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.settle()
        await rig.human("inboxops", ids["inboxops"], status="in_progress")
        await rig.settle()
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "MONITORING"
        assert (await rig.write_counts())["devhelm"] == devhelm_writes


async def test_out_of_order_observation_never_moves_back(store: Store) -> None:
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        adapter = rig.gateway.adapters["inboxops"]
        links = await rig.links(item_id)
        old = await adapter.get(links["inboxops"].ref)
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.settle()
        outcome = await rig.gateway.engine.observe(old, event_id="late-delivery")
        assert outcome.kind == "stale"
        item = await rig.only_item()
        assert item.status is Status.RESOLVED
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("hookstream", ids["hookstream"]))["status"] == "resolved"


async def test_concurrent_changes_converge_by_last_writer_and_keep_the_loser(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        # the ticket is changed first, the incident a moment later; neither has synced yet
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        async with rig.gateway.store.tx() as tx:
            history = await tx.history_of(item_id)
        lost = [h for h in history if h.kind == "conflict_lost"]
        assert [(h.system, h.field, h.new_value) for h in lost] == [
            ("inboxops", "status", "waiting")
        ]


async def test_concurrent_changes_converge_to_the_preferred_system(store: Store) -> None:
    fields = {
        **DEFAULT_FIELDS,
        "status": FieldRule(conflict=Conflict(policy="prefer", prefer="inboxops")),
    }
    async with running_rig(store, fields=fields) as rig:
        item_id, ids = await linked(rig)
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        # the preferred change is seen first; the incident's, made a moment later, loses
        await rig.poll("inboxops")
        await rig.poll("devhelm")
        await rig.settle()
        item = await rig.only_item()
        assert item.status is Status.WAITING
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "waiting"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] in (
            "IDENTIFIED",
            "MONITORING",
        )
        assert (await rig.object("incidentio", ids["incidentio"]))["status"] == "outstanding"
        async with rig.gateway.store.tx() as tx:
            history = await tx.history_of(item_id)
        lost = [h for h in history if h.kind == "conflict_lost"]
        assert [(h.system, h.field, h.new_value) for h in lost] == [
            ("devhelm", "status", "resolved")
        ]


async def test_unmapped_vendor_status_is_reported_not_guessed(store: Store) -> None:
    inbound = {
        "open": "open",
        "in_progress": "acknowledged",
        "resolved": "resolved",
        "closed": "closed",
    }
    maps = {"inboxops": ValueMapSettings(inbound=inbound, replace=True)}
    async with running_rig(store, status_maps=maps) as rig:
        item_id, ids = await linked(rig)
        before = await rig.write_counts()
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.settle()
        item = await rig.only_item()
        assert item.status is Status.OPEN
        async with rig.gateway.store.tx() as tx:
            history = await tx.history_of(item_id)
        unmapped = [h for h in history if h.kind == "unmapped"]
        assert [(h.system, h.field, h.new_value) for h in unmapped] == [
            ("inboxops", "status", "waiting")
        ]
        after = await rig.write_counts()
        assert {s: after[s] - before[s] for s in after} == {
            "hookstream": 0,
            "devhelm": 0,
            "inboxops": 0,  # the person's value is not written over
            "incidentio": 0,
        }
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "waiting"
        assert not (await rig.links(item_id))["inboxops"].dead


async def test_a_custom_value_is_not_written_over_until_the_item_changes(store: Store) -> None:
    """InboxOps's map (replaced by the config) has no canonical value for ``waiting``: a
    person's waiting ticket was reported, and then written back to the item's ``open`` at
    once, over the person's choice (or, with no outbound map, dead-lettered). It is left
    as it is, through writes of other fields, until the item's status changes."""
    inbound = {
        "open": "open",
        "in_progress": "acknowledged",
        "resolved": "resolved",
        "closed": "closed",
    }
    outbound = {
        "open": ["open"],
        "acknowledged": ["in_progress"],
        "monitoring": ["in_progress"],
        "waiting": ["in_progress"],
        "resolved": ["resolved"],
        "closed": ["closed"],
        "cancelled": ["closed"],
    }
    maps = {"inboxops": ValueMapSettings(inbound=inbound, outbound=outbound, replace=True)}
    async with running_rig(store, status_maps=maps) as rig:
        item_id, ids = await linked(rig)
        before = await rig.write_counts()
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.settle()
        assert (await rig.only_item()).status is Status.OPEN
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "waiting"
        assert await rig.writes_since(before) == dict.fromkeys(before, 0)
        links = await rig.links(item_id)
        assert not links["inboxops"].dirty and not links["inboxops"].dead

        # another field goes out to the ticket: its custom status stays
        await rig.gateway.engine.change(item_id, Fields(priority=Priority.URGENT))
        await rig.settle()
        ticket = await rig.object("inboxops", ids["inboxops"])
        assert (ticket["priority"], ticket["status"]) == ("urgent", "waiting")

        # the item's status changes: now the ticket takes it
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        await rig.poll("devhelm")
        await rig.settle()
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "resolved"
        assert (await rig.only_item()).status is Status.RESOLVED


async def test_a_burst_coalesces_into_one_write_per_linked_object(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        before = await rig.write_counts()
        burst = [
            "in_progress",
            "waiting",
            "open",
            "in_progress",
            "waiting",
            "in_progress",
            "open",
            "waiting",
            "in_progress",
            "resolved",
        ]
        versions = []
        for status in burst:  # ten changes arrive before any write goes out
            await rig.human("inboxops", ids["inboxops"], status=status)
            await rig.poll("inboxops")
            versions.append((await rig.only_item()).version)
        assert len(set(versions)) == 10, "every change reached the canonical item"
        await rig.settle()
        assert await rig.writes_since(before) == {
            "hookstream": 1,
            "devhelm": 1,
            "inboxops": 0,
            "incidentio": 1,
        }
        assert await statuses(rig, ids) == ALL_RESOLVED


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_creation_rule_filter_skips_objects_it_does_not_match(store: Store) -> None:
    from app.config.schema import Match
    from tests.rig import FAN_OUT

    rule = type(FAN_OUT)(
        name="only-orders",
        system="hookstream",
        create_in=FAN_OUT.create_in,
        match=Match(fields={"destination_name": ["orders-webhook-1"]}),
    )
    async with running_rig(store, create_rules=[rule]) as rig:
        await rig.open_issue(0)
        await rig.open_issue(1)
        await rig.settle()
        item = await rig.only_item()
        assert item.title == "orders-webhook-1: http_5xx"
        assert len(await rig.objects("inboxops")) == 1


# -- field directions ------------------------------------------------------------------------


async def test_an_out_system_receives_the_field_but_its_changes_are_ignored(
    store: Store,
) -> None:
    fields = {**DEFAULT_FIELDS, "status": FieldRule(systems={"inboxops": Direction.OUT})}
    async with running_rig(store, fields=fields) as rig:
        item_id, ids = await linked(rig)
        before = await rig.write_counts()
        await rig.human("inboxops", ids["inboxops"], status="waiting")
        await rig.settle()
        item = await rig.only_item()
        assert item.status is Status.OPEN, "the ticket's change did not reach the item"
        # the other vendors are not written; the ticket receives the canonical status back
        assert await rig.writes_since(before) == {
            "hookstream": 0,
            "devhelm": 0,
            "inboxops": 1,
            "incidentio": 0,
        }
        assert await statuses(rig, ids) == ALL_OPEN
        async with rig.gateway.store.tx() as tx:
            changes = [h for h in await tx.history_of(item_id) if h.kind == "change"]
        assert not [h for h in changes if h.system == "inboxops" and h.field == "status"]
        # a change made elsewhere still reaches the ticket
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_an_in_system_sets_the_field_but_is_never_written(store: Store) -> None:
    fields = {**DEFAULT_FIELDS, "status": FieldRule(systems={"devhelm": Direction.IN})}
    async with running_rig(store, fields=fields) as rig:
        _item_id, ids = await linked(rig)
        # created without a status: DevHelm starts it as its default
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "INVESTIGATING"
        devhelm_writes = (await rig.write_counts())["devhelm"]
        await rig.human("devhelm", ids["devhelm"], status="MONITORING")
        await rig.settle()
        assert (await rig.only_item()).status is Status.MONITORING
        assert await statuses(rig, ids) == {
            "hookstream": "acknowledged",
            "devhelm": "MONITORING",
            "inboxops": "in_progress",
            "incidentio": "outstanding",
        }
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.settle()
        assert (await rig.only_item()).status is Status.RESOLVED
        assert await statuses(rig, ids) == {
            "hookstream": "resolved",
            "devhelm": "MONITORING",  # never written
            "inboxops": "resolved",
            "incidentio": "completed",
        }
        assert (await rig.write_counts())["devhelm"] == devhelm_writes


# -- creation rule filters through the engine ------------------------------------------------


async def test_creation_rule_status_in_and_min_priority_filter_new_objects(
    store: Store,
) -> None:
    rule = CreateRule(
        name="urgent-open-tickets",
        system="inboxops",
        match=Match(status_in=[Status.OPEN, Status.ACKNOWLEDGED], min_priority=Priority.HIGH),
        create_in=[CreateIn(system="incidentio", scope=DEFAULT_INCIDENT_ID)],
    )
    tickets = [
        ("open urgent", "open", "urgent"),  # matches
        ("in progress high", "in_progress", "high"),  # matches: acknowledged, at the minimum
        ("open normal", "open", "normal"),  # below the minimum priority
        ("waiting urgent", "waiting", "urgent"),  # status not accepted
        ("resolved high", "resolved", "high"),  # status not accepted
    ]
    async with running_rig(store, fields={}, create_rules=[rule]) as rig:
        for subject, status, priority in tickets:
            response = await rig.control["inboxops"].post(
                "/_sim/seed", json={"subject": subject, "status": status, "priority": priority}
            )
            assert response.status_code == 201, response.text
        await rig.settle()
        async with rig.gateway.store.tx() as tx:
            items, total = await tx.search_items()
        assert total == 2
        assert sorted((i.title, i.status, i.priority) for i in items) == [
            ("in progress high", Status.ACKNOWLEDGED, Priority.HIGH),
            ("open urgent", Status.OPEN, Priority.URGENT),
        ]
        follow_ups = sorted(f["title"] for f in await rig.objects("incidentio"))
        assert follow_ups == ["in progress high", "open urgent"]


async def test_an_unmapped_value_does_not_start_a_work_item(store: Store) -> None:
    # hookstream's "open" is given no canonical meaning here; "acknowledged" keeps one
    maps = {
        "hookstream": ValueMapSettings(
            inbound={"acknowledged": "acknowledged", "resolved": "resolved"},
            outbound={"acknowledged": ["acknowledged"], "resolved": ["resolved"]},
            replace=True,
        )
    }
    async with running_rig(store, status_maps=maps) as rig:
        issue = await rig.open_issue()
        await rig.settle()
        async with rig.gateway.store.tx() as tx:
            assert (await tx.search_items())[1] == 0, "no item from a guessed status"
        assert await rig.objects("inboxops") == []
        # once the issue's status means something, the rule creates the item
        await rig.human("hookstream", issue, status="acknowledged")
        await rig.settle()
        item = await rig.only_item()
        assert item.status is Status.ACKNOWLEDGED
        assert len(await rig.objects("inboxops")) == 1


@pytest.mark.parametrize("reopen", ["allowed", "refused"])
async def test_a_reopen_devhelm_refuses_is_dead_lettered_once_and_nothing_loops(
    store: Store, reopen: str
) -> None:
    """vendors.md §2 (open question 4) leaves open whether a RESOLVED status-page
    incident may go back to an active status (simulator behaviour ``reopen``). Allowed,
    a reopen reaches DevHelm; refused (409), the DevHelm link is dead-lettered with
    DevHelm's reason, the other tools reopen, and no write is tried again and again."""
    async with running_rig(store) as rig:
        behaviour = await rig.control["devhelm"].put("/_sim/behaviour", json={"reopen": reopen})
        assert behaviour.status_code == 200, behaviour.text
        item_id, ids = await linked(rig)
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        await rig.human("inboxops", ids["inboxops"], status="open")
        await rig.settle()
        links = await rig.links(item_id)
        if reopen == "allowed":
            assert await statuses(rig, ids) == ALL_OPEN
            assert not links["devhelm"].dead
        else:
            assert await statuses(rig, ids) == {**ALL_OPEN, "devhelm": "RESOLVED"}
            assert links["devhelm"].dead
            assert "cannot be reopened" in (links["devhelm"].dead_reason or "")
            before = await rig.write_counts()
            for _ in range(3):
                await rig.poll()
                await rig.gateway.dispatcher.run_until_idle()
            assert await rig.write_counts() == before, "a refused write was tried again"


@pytest.mark.parametrize("regroup", ["reopen", "new_issue"])
async def test_a_failure_after_a_resolve_is_synced_whether_hookstream_reopens_or_opens_anew(
    store: Store, regroup: str
) -> None:
    """vendors.md §1 leaves open whether a new failure reopens the resolved issue (same
    fingerprint) or opens a new one (simulator behaviour ``regroup``). Reopened, the
    work item reopens everywhere; a new issue starts a new work item, and the resolved
    one stays resolved. Either way nothing is lost or made twice."""
    async with running_rig(store) as rig:
        behaviour = await rig.control["hookstream"].put(
            "/_sim/behaviour", json={"regroup": regroup}
        )
        assert behaviour.status_code == 200, behaviour.text
        _, ids = await linked(rig)
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.settle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        issue = await rig.object("hookstream", ids["hookstream"])
        again = await rig.control["hookstream"].post(
            "/_sim/failures",
            json={"destination_id": issue["destination_id"], "error_type": issue["error_type"]},
        )
        assert again.status_code == (200 if regroup == "reopen" else 201), again.text
        await rig.settle()
        async with rig.gateway.store.tx() as tx:
            _items, total = await tx.search_items()
        if regroup == "reopen":
            assert total == 1
            assert await statuses(rig, ids) == ALL_OPEN
        else:
            assert total == 2
            assert await statuses(rig, ids) == ALL_RESOLVED  # the old item stays resolved
            assert len(await rig.objects("hookstream")) == 2
            for system in ("devhelm", "inboxops", "incidentio"):
                assert len(await rig.objects(system)) == 2, system


async def test_a_hookstream_edit_read_before_a_write_wins_when_the_detail_has_no_time(
    store: Store,
) -> None:
    """hookstream's guide shows the issue detail with no ``updated_at`` (vendors.md §1;
    simulator behaviour ``issue_detail: guide``). A person acknowledges the issue after a
    ticket was resolved but before the gateway writes that to the issue: the read before
    the write must date the acknowledgement by its own time, so that, the later edit, it
    wins. Dated by the issue's last failure, it lost to the ticket and was overwritten."""
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        behaviour = await rig.control["hookstream"].put(
            "/_sim/behaviour", json={"issue_detail": "guide"}
        )
        assert behaviour.status_code == 200, behaviour.text
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.poll("inboxops")  # the issue is now due a write: resolved
        await rig.human("hookstream", ids["hookstream"], status="acknowledged")
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("hookstream", ids["hookstream"]))["status"] == "acknowledged"
        await rig.settle()
        assert (await rig.only_item()).status is Status.ACKNOWLEDGED
        assert (await rig.object("hookstream", ids["hookstream"]))["status"] == "acknowledged"
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "in_progress"


def counting_refreshes(rig: Rig) -> list[list[str]]:
    """The systems of the reads before writes the engine is handed, one list per engine
    transaction (filled as the dispatcher runs)."""
    engine = rig.gateway.engine
    observe_many = engine.observe_many
    batches: list[list[str]] = []

    async def counting(observations, **kwargs):  # type: ignore[no-untyped-def]
        events = [event_id or "" for _, event_id in observations]
        if any(e.startswith("refresh-") for e in events):
            batches.append(sorted(obj.ref.system for obj, _ in observations))
        return await observe_many(observations, **kwargs)

    engine.observe_many = counting  # type: ignore[method-assign]
    return batches


async def test_the_reads_before_one_changes_writes_are_folded_in_one_transaction(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        refresh_batches = counting_refreshes(rig)
        before = await rig.write_counts()
        # a person resolves the issue, and the three other objects too, in their tools:
        # the gateway hears of the issue first; each read finds its object changed
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.human("incidentio", ids["incidentio"], status="completed")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_once()
        # the three reads ran together and made one engine transaction, which found
        # every object resolved already: nothing left to write
        assert refresh_batches == [["devhelm", "inboxops", "incidentio"]]
        assert await rig.writes_since(before) == {
            "hookstream": 0,
            "devhelm": 0,
            "inboxops": 0,
            "incidentio": 0,
        }
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_a_read_that_finds_the_object_as_last_seen_writes_without_the_engine(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        refresh_batches = counting_refreshes(rig)
        reads = rig.gateway.metrics.refresh_reads
        reads_before = {s: reads.labels(s)._value.get() for s in ("devhelm", "inboxops")}
        before = await rig.write_counts()
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_once()
        # each object was read before its write, found as the gateway last saw it, and
        # written at once: no engine transaction for the reads
        assert refresh_batches == []
        assert {s: reads.labels(s)._value.get() - n for s, n in reads_before.items()} == {
            "devhelm": 1,
            "inboxops": 1,
        }
        assert await rig.writes_since(before) == {
            "hookstream": 0,
            "devhelm": 1,
            "inboxops": 1,
            "incidentio": 1,
        }
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_a_change_undone_before_its_write_reads_and_writes_nothing(store: Store) -> None:
    """The issue is resolved and reopened before the dispatcher writes: the other three
    links are dirty, but the item is back to what each object showed. No write follows,
    so there is nothing a read could keep from being overwritten: no call at all (the
    read before each write was still made, three GETs a change undone in a burst)."""
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        reads = rig.gateway.metrics.refresh_reads
        reads_before = {s: reads.labels(s)._value.get() for s in ids}
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.poll("hookstream")
        calls_before = {s: len(rig.sims[s].kit.requests) for s in ids}
        links = await rig.links((await rig.only_item()).id)
        assert all(links[s].dirty for s in ("devhelm", "inboxops", "incidentio")), links
        await rig.gateway.dispatcher.run_until_idle()
        assert {
            s: reads.labels(s)._value.get() - n for s, n in reads_before.items()
        } == dict.fromkeys(ids, 0)
        calls = {s: len(rig.sims[s].kit.requests) - n for s, n in calls_before.items()}
        assert calls == {"hookstream": 0, "devhelm": 0, "inboxops": 0, "incidentio": 0}
        links = await rig.links((await rig.only_item()).id)
        assert not any(link.dirty for link in links.values()), links
        assert await statuses(rig, ids) == ALL_OPEN


async def test_a_read_that_cannot_be_folded_in_fails_only_its_own_write(store: Store) -> None:
    async with running_rig(store) as rig:
        _, ids = await linked(rig)
        engine = rig.gateway.engine
        observe_many = engine.observe_many

        async def failing_for_devhelm(observations, **kwargs):  # type: ignore[no-untyped-def]
            if any(obj.ref.system == "devhelm" for obj, _ in observations):
                raise RuntimeError("the database refused this observation")
            return await observe_many(observations, **kwargs)

        engine.observe_many = failing_for_devhelm  # type: ignore[method-assign]
        before = await rig.write_counts()
        # DevHelm's incident changed there too: its read must go to the engine, and fails
        await rig.human("devhelm", ids["devhelm"], status="MONITORING")
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_once()
        assert await rig.writes_since(before) == {
            "hookstream": 0,
            "devhelm": 0,
            "inboxops": 1,
            "incidentio": 1,
        }
        links = await rig.links((await rig.only_item()).id)
        assert links["devhelm"].dirty and "internal error" in (links["devhelm"].last_error or "")
