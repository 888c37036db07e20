"""Real gateway processes (``syncgate serve``): crash recovery after kill -9, and two
processes sharing one PostgreSQL database. The simulators run in the test's own loop;
the tests wait on conditions (events processed, queue empty) with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from app.inbox import HANDOVER_MAX, MAX_EVENT_ATTEMPTS
from app.model import ObjectRef
from app.store import Store
from tests import blackbox
from tests.blackbox import (
    GatewayProcess,
    admin_client,
    eventually,
    free_port,
    seed_fanned_out,
    sim_objects,
    simulators,
    sqlite_gateway,
    write_config,
)
from tests.conftest import open_store, postgres_url
from tests.contract.kits import KITS
from tests.rig import FAN_OUT, SYSTEMS

pytestmark = pytest.mark.slow


async def settled(store: Store, expected_items: int) -> bool:
    async with store.tx() as tx:
        _, items = await tx.search_items(limit=1)
        depth = sum((await tx.queue_depth()).values())
        pending = await tx.pending_events()
    return items >= expected_items and depth == 0 and pending == 0


def titles(objects: list[dict[str, Any]], key: str = "title") -> Counter[str]:
    return Counter(str(o[key]) for o in objects)


async def test_kill_9_mid_burst_loses_no_acknowledged_webhook_and_writes_nothing_twice(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "gateway.db"
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, f"sqlite+aiosqlite:///{db}", urls)
        first = GatewayProcess(config, port, "first", tmp_path / "gateway.log")
        await first.ready()
        inboxops = sims["inboxops"].kit
        for name in ("devhelm", "incidentio"):  # slow vendors: writes are still out at the kill
            await control[name].put("/_sim/latency", json={"ms": 200})

        async def fifteen_acknowledged() -> bool:
            return sum(1 for d in inboxops.deliveries if d.delivered) >= 15

        subjects = [f"Checkout fails for customer {n}" for n in range(40)]
        for n, subject in enumerate(subjects):
            response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
            assert response.status_code == 201
            if n == 20:
                await eventually(fifteen_acknowledged, timeout_s=30, what="15 acks")
                first.kill9()
        await inboxops.flush()  # deliveries to the dead gateway have failed for good
        acked = {d.body["data"]["subject"] for d in inboxops.deliveries if d.delivered}
        assert len(acked) >= 15
        store = Store.connect(f"sqlite:///{db}")
        async with store.tx() as tx:
            unfinished = (await tx.pending_events(), sum((await tx.queue_depth()).values()))
        await store.close()
        assert sum(unfinished) > 0, "the crash must leave work in flight"
        for name in ("devhelm", "incidentio"):
            await control[name].put("/_sim/latency", json={"ms": 0})
        second = GatewayProcess(config, port, "second", tmp_path / "gateway.log")
        try:
            await second.ready()
            store = Store.connect(f"sqlite:///{db}")
            try:
                await eventually(lambda: settled(store, len(acked)), timeout_s=60, what="drain")
            finally:
                await store.close()
        finally:
            await second.stop()
        incidents = titles(await sim_objects(control["devhelm"]))
        follow_ups = titles(await sim_objects(control["incidentio"]))
        for subject in acked:  # every acknowledged change reached every linked object
            assert incidents[subject] == 1, subject
            assert follow_ups[subject] == 1, subject
        assert max(incidents.values()) == 1 and max(follow_ups.values()) == 1
        creates = [r for r in sims["devhelm"].kit.writes() if r.method == "POST"]
        assert len(creates) == sum(incidents.values()), "a create was sent twice"


async def test_an_issue_notification_outlives_more_failed_fetches_than_a_crash_is_given(
    tmp_path: Path,
) -> None:
    """hookstream answers the gateway's reads of an issue 429 a dozen times in a row (more
    than the tries an event whose processing crashes gets): the issue notification is
    kept, and its work item and three creates are made once the reads succeed. A 429 asks
    to wait and is not counted as a try: the one try counted is the read that worked."""
    port = free_port()
    systems = SYSTEMS
    async with simulators(f"http://127.0.0.1:{port}", systems, webhooks=("hookstream",)) as (
        sims,
        control,
    ):
        # the in-process rig's rule
        gateway = sqlite_gateway(
            tmp_path, control, port, create_rules=[msgspec.to_builtins(FAN_OUT)]
        )
        try:
            await gateway.ready()
            reads = MAX_EVENT_ATTEMPTS + 4
            fault = {"status": 429, "retry_after": 0, "count": reads, "methods": ["GET"]}
            assert (await control["hookstream"].post("/_sim/faults", json=fault)).is_success
            issue = await KITS["hookstream"].seed(control["hookstream"])
            await sims["hookstream"].kit.flush()
            (delivery,) = sims["hookstream"].kit.deliveries
            assert delivery.delivered, "the notification was acknowledged"

            async with admin_client(f"http://127.0.0.1:{port}") as admin:

                async def fanned_out() -> bool:
                    found = await admin.get(
                        "/lookup", params={"system": "hookstream", "external_id": issue.external_id}
                    )
                    if found.status_code == 404:  # no work item yet
                        return False
                    links = found.json()["links"]
                    return len(links) == len(systems) and all(ln["external_id"] for ln in links)

                await eventually(fanned_out, timeout_s=60, what="the issue's three creates")
                events = (await admin.get("/events", params={"system": "hookstream"})).json()
            (event,) = events["events"]
            assert event["state"] == "done" and event["attempts"] == 1, event
            assert issue.external_id in event["outcome"]
        finally:
            await gateway.stop()
        for system in systems[1:]:  # one object each, not one per try
            assert len(await sim_objects(control[system])) == 1, system


async def test_a_429_on_a_write_holds_back_the_reads_of_the_same_vendor_until_retry_after(
    tmp_path: Path,
) -> None:
    """hookstream answers a write 429 with ``Retry-After``; an issue notification that
    arrives meanwhile names an issue to read. The gateway sends hookstream nothing, that
    read included, until the wait is over, and then makes the issue's work item."""
    port = free_port()
    wait_s = 4.0
    async with simulators(
        f"http://127.0.0.1:{port}", SYSTEMS, webhooks=("hookstream", "inboxops")
    ) as (sims, control):
        gateway = sqlite_gateway(
            tmp_path, control, port, create_rules=[msgspec.to_builtins(FAN_OUT)]
        )
        hookstream = sims["hookstream"].kit
        try:
            await gateway.ready()
            async with admin_client(gateway.url) as admin:

                async def ticket_of(issue_id: str) -> str | None:
                    found = await admin.get(
                        "/lookup", params={"system": "hookstream", "external_id": issue_id}
                    )
                    if found.status_code == 404:
                        return None
                    ids = [ln["external_id"] for ln in found.json()["links"]]
                    systems = [ln["system"] for ln in found.json()["links"]]
                    ticket = dict(zip(systems, ids, strict=True)).get("inboxops")
                    return ticket if ticket and all(ids) else None

                first = await KITS["hookstream"].seed(control["hookstream"], 0)
                await eventually(
                    lambda: _is_some(ticket_of(first.external_id)),
                    timeout_s=30,
                    what="the first issue's ticket",
                )
                ticket = await ticket_of(first.external_id)
                assert ticket is not None
                fault = {"status": 429, "retry_after": wait_s, "count": 1, "methods": ["PATCH"]}
                assert (await control["hookstream"].post("/_sim/faults", json=fault)).is_success
                # a person resolves the ticket: the gateway resolves the issue, and is told
                # to wait
                await KITS["inboxops"].human_change(
                    control["inboxops"], ObjectRef("inboxops", "", ticket)
                )

                def told_to_wait() -> list[float]:
                    return [r.at for r in hookstream.requests if r.status == 429]

                async def was_told_to_wait() -> bool:
                    return bool(told_to_wait())

                await eventually(was_told_to_wait, timeout_s=30, what="the write's 429")
                (told_at,) = told_to_wait()
                # the next issue's notification arrives during the wait
                second = await KITS["hookstream"].seed(control["hookstream"], 1)
                await hookstream.flush()
                assert all(d.delivered for d in hookstream.deliveries)
                await eventually(
                    lambda: _is_some(ticket_of(second.external_id)),
                    timeout_s=30,
                    what="the second issue's work item, after the wait",
                )

                async def resolved_again() -> bool:
                    return any(
                        r.at > told_at and r.method == "PATCH" and r.status == 200
                        for r in hookstream.requests
                    )

                # due again once the wait is over: claimed at the claim loop's next round
                await eventually(resolved_again, timeout_s=10, what="the resolve sent again")
            after = [r for r in hookstream.requests if r.at > told_at]
            assert after, "the issue was read, and the resolve sent again"
            early = [
                f"{r.method} {r.path} {r.at - told_at:.2f} s after"
                for r in after
                if r.at < told_at + wait_s
            ]
            assert not early, f"called during the {wait_s} s hookstream asked for: {early}"
            reads = [r for r in after if r.path == f"/v1/issues/{second.external_id}"]
            assert reads and all(r.status == 200 for r in reads), reads
            resolved = [r for r in after if r.method == "PATCH" and r.status == 200]
            assert [r.body for r in resolved] == [{"status": "resolved"}]
        finally:
            await gateway.stop()


async def _is_some(value: Awaitable[str | None]) -> bool:
    return await value is not None


@pytest.mark.postgres
async def test_two_gateway_processes_share_one_postgres_without_duplicate_writes(
    tmp_path: Path,
) -> None:
    store = await open_store("postgres", tmp_path)  # migrated and empty
    ports = [free_port(), free_port()]
    async with simulators(f"http://127.0.0.1:{ports[0]}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, os.environ["SYNCGATE_TEST_POSTGRES_URL"], urls)
        gateways = [
            GatewayProcess(config, port, f"gw{i}", tmp_path / f"gw{i}.log")
            for i, port in enumerate(ports)
        ]
        try:
            await asyncio.gather(*(g.ready() for g in gateways))
            subjects = [f"Refund stuck for order {n}" for n in range(30)]
            for n, subject in enumerate(subjects):
                if n == 15:  # the second half of the burst goes to the other process
                    await control["inboxops"].put(
                        "/_sim/webhook", json={"url": f"{gateways[1].url}/webhooks/inboxops"}
                    )
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201
            await sims["inboxops"].kit.flush()
            assert all(d.delivered for d in sims["inboxops"].kit.deliveries)
            await eventually(lambda: settled(store, 30), timeout_s=60, what="both drain")
        finally:
            for g in gateways:
                await g.stop()
            await store.close()
        incidents = titles(await sim_objects(control["devhelm"]))
        follow_ups = titles(await sim_objects(control["incidentio"]))
        assert incidents == Counter(subjects) and follow_ups == Counter(subjects)
        for system in ("devhelm", "incidentio"):
            posts = [r for r in sims[system].kit.writes() if r.method == "POST"]
            assert len(posts) == 30, f"{system}: {len(posts)} creates for 30 tickets"


async def test_sigterm_finishes_in_flight_work_and_leaves_no_claim(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "gateway.db"
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, f"sqlite+aiosqlite:///{db}", urls)
        for name in ("devhelm", "incidentio"):  # writes are slow, so some are in flight
            await control[name].put("/_sim/latency", json={"ms": 300})
        gateway = GatewayProcess(config, port, "graceful", tmp_path / "gateway.log")
        await gateway.ready()
        for n in range(10):
            await control["inboxops"].post("/_sim/seed", json={"subject": f"Ticket {n}"})
        await sims["inboxops"].kit.flush()

        async def writes_in_flight() -> bool:
            return any(r.status == 0 for r in sims["devhelm"].kit.requests)

        await eventually(writes_in_flight, timeout_s=30, what="a write in flight")
        await gateway.stop()  # SIGTERM
        # a clean stop is exit 0 (uvicorn's raising the signal again made it -SIGTERM)
        assert gateway.proc.returncode == 0
        log_lines = (tmp_path / "gateway.log").read_text().splitlines()
        logged = [json.loads(line) for line in log_lines if line.startswith("{")]
        assert any(entry["message"] == "gateway stopped" for entry in logged)
        # at the default level (README, "Logs") the items created have a line each, the
        # writes and the events processed none (they are in the database)
        messages = {entry["message"] for entry in logged}
        assert "work item created" in messages
        assert not messages & {"wrote", "event processed"}, messages
        store = Store.connect(f"sqlite:///{db}")
        try:
            async with store.tx() as tx:
                claimed = [
                    link
                    for state in ("pending", "failed")
                    for link in await tx.outbox(state, limit=1000)
                    if link.claimed_by is not None
                ]
                attempts = [
                    a
                    for link in await tx.outbox("pending", limit=1000)
                    for a in await tx.attempts_of(link.id)
                ]
        finally:
            await store.close()
        assert claimed == [], "a stopped gateway holds no claim"
        # every write that was sent before the stop was recorded as finished
        recorded_creates = len([r for r in sims["devhelm"].kit.writes() if r.method == "POST"])
        store = Store.connect(f"sqlite:///{db}")
        try:
            async with store.tx() as tx:
                created = [
                    link
                    for item in (await tx.search_items(limit=100))[0]
                    for link in await tx.links_of(item.id)
                    if link.system == "devhelm" and link.external_id is not None
                ]
        finally:
            await store.close()
        assert len(created) == recorded_creates
        assert attempts == [] or all(a.outcome != "ok" for a in attempts)
        assert "ReadTimeout" not in (tmp_path / "gateway.log").read_text()


async def pending_events(store: Store) -> int:
    async with store.engine.connect() as conn:
        query = "SELECT count(*) FROM events WHERE state = 'pending'"
        return int((await conn.execute(sa.text(query))).scalar() or 0)


async def waiting_for_a_lock(store: Store) -> bool:
    async with store.engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return bool((await conn.execute(sa.text(query))).scalar())


@contextlib.asynccontextmanager
async def retitled_while_held(
    store: Store,
    sims: dict[str, Any],
    control: dict[str, httpx.AsyncClient],
    ticket: str,
    subjects: list[str],
) -> AsyncIterator[None]:
    """Retitle the ticket once per subject while another session holds every work item's
    lock (a slow database): the first delivery's round waits for it, holding the inbox
    worker, and the others are stored. Yields with every delivery stored, pending, and
    the lock still held; released on leaving."""

    async def edit(subject: str) -> None:
        response = await control["inboxops"].patch(
            f"/_sim/objects/{ticket}", json={"subject": subject}
        )
        assert response.status_code == 200, response.text
        await sims["inboxops"].kit.flush()

    async def all_stored() -> bool:
        return await pending_events(store) == len(subjects)

    async with store.engine.connect() as lock:
        await lock.execute(sa.text("SELECT id FROM work_items FOR UPDATE"))
        await edit(subjects[0])  # its round waits for the item's lock
        await eventually(lambda: waiting_for_a_lock(store), timeout_s=30, what="the round blocked")
        for subject in subjects[1:]:
            await edit(subject)
        await eventually(all_stored, timeout_s=60, what="every delivery stored")
        yield
        await lock.commit()


@pytest.mark.postgres
async def test_a_stop_gives_back_the_received_events_it_had_not_taken_yet(
    tmp_path: Path,
) -> None:
    """The receiver stores a delivery already claimed for its inbox worker and hands it
    over in memory. Deliveries handed over and not taken yet when the gateway stops are
    made due again at once, not left claimed until their lease (here 120 s) lapses: the
    next process takes them straight away. The worker is held in a round by another
    session's lock on the work item (a slow database), so deliveries wait for it."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, postgres_url(), urls, dispatcher={"lease_s": 120})
        first = GatewayProcess(config, port, "first", tmp_path / "first.log")
        second: GatewayProcess | None = None
        admin = admin_client(first.url)

        async def events(where: str) -> list[Any]:
            async with store.engine.connect() as conn:
                query = f"SELECT claimed_until FROM events WHERE {where}"
                return list((await conn.execute(sa.text(query))).all())

        async def logged_stopping() -> bool:
            return '"message":"gateway stopping"' in first.log_path.read_text()

        subjects = [f"Printer on fire, take {n}" for n in range(1, 9)]
        try:
            await first.ready()
            (ticket,) = await seed_fanned_out(control, admin, ["Printer on fire"])
            async with retitled_while_held(store, sims, control, ticket, subjects):
                first.proc.send_signal(signal.SIGTERM)
                await eventually(logged_stopping, timeout_s=30, what="the stop begun")
            # the round in flight ended with the lock; then the worker stopped
            await first.stop()
            assert first.proc.returncode == 0
            left = await events("state = 'pending'")
            assert len(left) == len(subjects) - 1, "the round in flight took one delivery"
            assert all(claimed_until is None for (claimed_until,) in left), left

            second = GatewayProcess(config, free_port(), "second", tmp_path / "second.log")
            await second.ready()

            async def drained_in_order() -> bool:
                incidents = await sim_objects(control["devhelm"])
                return not await events("state = 'pending'") and [
                    i["title"] for i in incidents
                ] == [subjects[-1]]

            # well within the 120 s the claims would otherwise hold them
            await eventually(drained_in_order, timeout_s=30, what="the second process done")
        finally:
            await admin.aclose()
            await first.stop()
            if second is not None:
                await second.stop()
            await store.close()


@pytest.mark.postgres
async def test_a_burst_past_the_handover_is_processed_in_the_order_it_arrived(
    tmp_path: Path,
) -> None:
    """The inbox worker is held in a round (another session's lock on the work item)
    while a ticket is retitled more times than the worker may be handed over
    (``HANDOVER_MAX``): the deliveries past it are stored unclaimed. Claimed before the
    older ones handed over, the newest title was applied first, and each older one then
    came in dated before it, so the ticket was read again for every one of them, and
    the older titles reached no other tool. Processed in the order they arrived, each
    title is applied in turn, and the ticket is never read."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        # a lease long enough that no handed delivery is dropped for being held (half
        # of it) while the burst is stored
        write_config(config, postgres_url(), urls, dispatcher={"lease_s": 120})
        gateway = GatewayProcess(config, port, "only", tmp_path / "gateway.log")
        admin = admin_client(gateway.url)

        subjects = [f"Printer on fire, take {n}" for n in range(1, HANDOVER_MAX + 41)]
        try:
            await gateway.ready()
            (ticket,) = await seed_fanned_out(control, admin, ["Printer on fire"])
            reads_before = len(sims["inboxops"].kit.requests)
            async with retitled_while_held(store, sims, control, ticket, subjects):
                pass

            async def drained() -> bool:
                return await pending_events(store) == 0 and [
                    i["title"] for i in await sim_objects(control["devhelm"])
                ] == [subjects[-1]]

            await eventually(drained, timeout_s=60, what="every delivery processed")
            await eventually(lambda: blackbox.settled(admin), timeout_s=60, what="settled")
            path = f"/api/v1/tickets/{ticket}"
            reads = [
                r
                for r in sims["inboxops"].kit.requests[reads_before:]
                if r.method == "GET" and r.path == path
            ]
            assert reads == [], f"the ticket was read again {len(reads)} times"
            found = await admin.get("/lookup", params={"system": "inboxops", "external_id": ticket})
            item_id = found.json()["item"]["id"]
            detail = (await admin.get(f"/work-items/{item_id}", params={"history": 1000})).json()
            titles = [
                h["new_value"]
                for h in detail["history"]
                if h["kind"] == "change" and h["system"] == "inboxops" and h["field"] == "title"
            ]
            assert titles == subjects or titles == subjects[::-1], titles[:3]
        finally:
            await admin.aclose()
            await gateway.stop()
            await store.close()


@pytest.mark.postgres
async def test_a_reopen_while_a_stale_resolve_is_in_flight_survives_its_echo(
    tmp_path: Path,
) -> None:
    """Two processes on one PostgreSQL. A person completes an incident.io follow-up; the
    resolve goes out to the InboxOps ticket, slowly (InboxOps answers in 2 s). While it is
    in flight the person reopens the follow-up, and the gateway applies the reopen. The
    resolve then lands (its answer lost: a 500 after the change), newer by InboxOps's
    clock than the reopen, and InboxOps announces it to the other process. That echo of
    the gateway's own stale write looked like a person resolving the ticket after the
    reopen: it won, and the reopen was overwritten in every tool."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    ports = [free_port(), free_port()]
    async with simulators(f"http://127.0.0.1:{ports[0]}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, postgres_url(), urls)
        gateways = [
            GatewayProcess(config, port, f"gw{i}", tmp_path / f"gw{i}.log")
            for i, port in enumerate(ports)
        ]
        admin = admin_client(gateways[0].url)
        try:
            await asyncio.gather(*(g.ready() for g in gateways))
            await seed_fanned_out(control, admin, ["Invoices render blank"])
            (follow_up,) = await sim_objects(control["incidentio"])
            # the other tool's webhooks go to the other process
            await control["incidentio"].put(
                "/_sim/webhook", json={"url": f"{gateways[1].url}/webhooks/incidentio"}
            )
            async with store.tx() as tx:
                (item,), _ = await tx.search_items(limit=1)
            await control["inboxops"].put("/_sim/latency", json={"ms": 2000})
            lost = {"status": 500, "count": 1, "methods": ["PATCH"], "after": True}
            assert (await control["inboxops"].post("/_sim/faults", json=lost)).is_success

            async def person(status: str) -> None:
                response = await control["incidentio"].patch(
                    f"/_sim/objects/{follow_up['id']}", json={"status": status}
                )
                assert response.status_code == 200, response.text

            async def item_status() -> str:
                response = await admin.get(f"/work-items/{item.id}")
                return str(response.json()["item"]["status"])

            async def resolve_in_flight() -> bool:
                requests = sims["inboxops"].kit.requests
                return any(r.method == "PATCH" and r.status == 0 for r in requests)

            await person("completed")
            await eventually(resolve_in_flight, timeout_s=20, what="the resolve in flight")

            async def reopened() -> bool:
                return await item_status() == "open"

            await person("outstanding")
            await eventually(reopened, timeout_s=10, what="the reopen applied")
            assert await resolve_in_flight(), "the resolve landed before the reopen was applied"
            await control["inboxops"].put("/_sim/latency", json={"ms": 0})

            async def converged() -> bool:
                await sims["inboxops"].kit.flush()
                await sims["incidentio"].kit.flush()
                if not await blackbox.settled(admin):
                    return False
                objects = {
                    "inboxops": await sim_objects(control["inboxops"]),
                    "incidentio": await sim_objects(control["incidentio"]),
                }
                return {name: [o["status"] for o in objs] for name, objs in objects.items()} in (
                    {"inboxops": ["open"], "incidentio": ["outstanding"]},
                    {"inboxops": ["resolved"], "incidentio": ["completed"]},
                )

            await eventually(converged, timeout_s=30, what="every tool settled")
            assert await item_status() == "open", "the reopen was overwritten"
            assert [o["status"] for o in await sim_objects(control["incidentio"])] == [
                "outstanding"
            ]
            history = (await admin.get(f"/work-items/{item.id}")).json()["history"]
            changes = [(h["system"], h["new_value"]) for h in history if h["kind"] == "change"]
            assert changes[-2:] == [("incidentio", "resolved"), ("incidentio", "open")], changes
        finally:
            await admin.aclose()
            for g in gateways:
                await g.stop()
            await store.close()


@pytest.mark.postgres
async def test_three_processes_polling_one_vendor_start_one_item_and_one_object_each(
    tmp_path: Path,
) -> None:
    """Three processes on one PostgreSQL each poll InboxOps (no webhooks), so every new
    ticket, and each person's edit of one, is seen by all three at about the same time:
    one work item per ticket, one incident and one follow-up per item, the last edit in
    every tool, and a bounded number of writes (no loop between the processes)."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    ports = [free_port() for _ in range(3)]
    async with simulators(f"http://127.0.0.1:{ports[0]}", webhooks=()) as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(
            config,
            postgres_url(),
            urls,
            systems={"inboxops": {"poll_interval_s": 0.05, "poll_overlap_s": 5}},
        )
        gateways = [
            GatewayProcess(config, port, f"gw{i}", tmp_path / f"gw{i}.log")
            for i, port in enumerate(ports)
        ]
        admin = admin_client(gateways[0].url)
        subjects = [f"Login loop on device {n}" for n in range(12)]
        try:
            await asyncio.gather(*(g.ready() for g in gateways))
            tickets = []
            for subject in subjects:
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201, response.text
                tickets.append(str(response.json()["data"]["id"]))
            edited = [f"{s} (edited)" for s in subjects]
            for ticket, subject in zip(tickets, edited, strict=True):
                response = await control["inboxops"].patch(
                    f"/_sim/objects/{ticket}", json={"subject": subject}
                )
                assert response.status_code == 200, response.text

            async def converged() -> bool:
                if not await blackbox.settled(admin):
                    return False
                for name in ("devhelm", "incidentio"):
                    titles_there = sorted(o["title"] for o in await sim_objects(control[name]))
                    if titles_there != sorted(edited):
                        return False
                return True

            await eventually(converged, timeout_s=45, what="every ticket fanned out, edited")
            async with store.tx() as tx:
                _, items = await tx.search_items(limit=1)
            assert items == len(subjects)
        finally:
            await admin.aclose()
            for g in gateways:
                await g.stop()
            await store.close()
        for name in ("devhelm", "incidentio"):
            writes = sims[name].kit.writes()
            posts = [r for r in writes if r.method == "POST"]
            assert len(posts) == len(subjects), f"{name}: {len(posts)} creates"
            # a create, perhaps the edit after it: never a loop between the processes
            assert len(writes) <= 2 * len(subjects) + 2, f"{name}: {len(writes)} writes"
        assert sims["inboxops"].kit.writes() == []


@pytest.mark.postgres
async def test_kill_9_with_creates_in_flight_leaves_the_survivor_one_object_per_link(
    tmp_path: Path,
) -> None:
    """Two processes on one PostgreSQL, the vendors slow (1.5 s an answer). One is killed
    with creates on their way to DevHelm and incident.io: the vendors make the objects,
    but no answer is recorded. The survivor takes the links over once their leases lapse,
    finds the objects the dead process made, and creates each object once; a process
    started again afterwards changes nothing."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    ports = [free_port(), free_port()]
    async with simulators(f"http://127.0.0.1:{ports[0]}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, postgres_url(), urls)
        gateways = [
            GatewayProcess(config, port, f"gw{i}", tmp_path / f"gw{i}.log")
            for i, port in enumerate(ports)
        ]
        admin = admin_client(gateways[1].url)
        subjects = [f"Export times out, shard {n}" for n in range(8)]
        try:
            await asyncio.gather(*(g.ready() for g in gateways))
            for name in ("devhelm", "incidentio"):
                await control[name].put("/_sim/latency", json={"ms": 1500})
            for subject in subjects:  # the webhooks go to the first process
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201, response.text

            async def creates_in_flight_from_the_first() -> bool:
                async with store.engine.connect() as conn:
                    query = (
                        "SELECT count(*) FROM links WHERE claimed_by LIKE 'gw0%'"
                        " AND external_id IS NULL"
                    )
                    claimed = (await conn.execute(sa.text(query))).scalar()
                pending = [r for r in sims["devhelm"].kit.requests if r.method == "POST"]
                return bool(claimed) and any(r.status == 0 for r in pending)

            await eventually(
                creates_in_flight_from_the_first, timeout_s=20, what="creates in flight"
            )
            gateways[0].kill9()
            for name in ("devhelm", "incidentio"):
                await control[name].put("/_sim/latency", json={"ms": 0})

            async def fanned_out() -> bool:
                if not await blackbox.settled(admin):
                    return False
                for name in ("devhelm", "incidentio"):
                    if len(await sim_objects(control[name])) < len(subjects):
                        return False
                return True

            await eventually(fanned_out, timeout_s=40, what="the survivor done")
            restarted = GatewayProcess(config, free_port(), "gw0-again", tmp_path / "again.log")
            gateways.append(restarted)
            await restarted.ready()
            await eventually(fanned_out, timeout_s=20, what="the restart settled")
            async with store.tx() as tx:
                dead = await tx.dead_count()
            assert dead == 0
            async with store.engine.connect() as conn:  # creates taken over: tried twice
                query = "SELECT count(*) FROM links WHERE create_claims > 1"
                assert (await conn.execute(sa.text(query))).scalar()
        finally:
            await admin.aclose()
            for g in gateways:
                await g.stop()
            await store.close()
        assert titles(await sim_objects(control["devhelm"])) == Counter(subjects)
        assert titles(await sim_objects(control["incidentio"])) == Counter(subjects)


def faketime_env(ahead_s: float) -> dict[str, str]:
    """The environment of a process whose host clock is ``ahead_s`` seconds ahead
    (libfaketime: scripts/faketime.sh installs it and names it)."""
    lib = os.environ.get("SYNCGATE_FAKETIME_LIB")
    if not lib or not Path(lib).exists():
        raise RuntimeError(
            "SYNCGATE_FAKETIME_LIB names no libfaketime: run the suite with scripts/test, "
            "which installs Debian's libfaketime, or source scripts/faketime.sh"
        )
    # the process's monotonic clock (its event loop's timers) is left alone
    return {"LD_PRELOAD": lib, "FAKETIME": f"+{ahead_s}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.postgres
async def test_a_host_clock_far_ahead_takes_over_no_write_another_process_is_making(
    tmp_path: Path,
) -> None:
    """Two processes on one PostgreSQL, the second on a host whose clock runs 30 s ahead
    (more than the 3 s lease). The first is making a slow create on DevHelm, renewing
    its lease. Stamped and compared with each host's clock, that lease had lapsed for
    the second process from the moment it started: it claimed the create and made it
    again, from its look-up for the first one's marker on (which found it here only
    because the look-up was answered after the slow create; a create answered later
    than the look-up made a second public incident). Both now read the time from the
    database server's clock: the process ahead leaves the write alone, DevHelm gets one
    call, and that process says in its log how far off its host is."""
    store = await open_store("postgres", tmp_path)  # migrated and empty
    ports = [free_port(), free_port()]
    async with simulators(f"http://127.0.0.1:{ports[0]}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(config, postgres_url(), urls, dispatcher={"lease_s": 3})
        honest = GatewayProcess(config, ports[0], "honest", tmp_path / "honest.log")
        gateways = [honest]
        admin = admin_client(honest.url)
        try:
            await honest.ready()
            await control["devhelm"].put("/_sim/latency", json={"ms": 6000})
            seeded = await control["inboxops"].post("/_sim/seed", json={"subject": "Slow"})
            assert seeded.status_code == 201, seeded.text

            def creating() -> list[Any]:
                return [r for r in sims["devhelm"].kit.requests if r.method == "POST"]

            async def on_its_way() -> bool:
                return any(r.status == 0 for r in creating())

            await eventually(
                on_its_way, timeout_s=20, what="the honest process's create on its way"
            )
            ahead = GatewayProcess(
                config, ports[1], "ahead", tmp_path / "ahead.log", env=faketime_env(30)
            )
            gateways.append(ahead)
            await ahead.ready()

            async def made() -> bool:
                return bool(await sim_objects(control["devhelm"])) and await blackbox.settled(admin)

            await eventually(made, timeout_s=30, what="the incident made")
            # the process ahead has claimed (or not) by now: it claims due writes at start
            async with httpx.AsyncClient(base_url=ahead.url) as plain:
                ahead_metrics = (await plain.get("/metrics")).text
            async with store.engine.connect() as conn:
                query = "SELECT create_claims FROM links WHERE system = 'devhelm'"
                assert (await conn.execute(sa.text(query))).scalars().all() == [1]
        finally:
            await admin.aclose()
            for g in gateways:
                await g.stop()
            await store.close()
        assert len(await sim_objects(control["devhelm"])) == 1
        calls = [(r.method, r.path, r.status) for r in sims["devhelm"].kit.requests]
        assert len(calls) == 1, calls  # the honest process's create, nothing else
        assert blackbox.metric_value(ahead_metrics, "syncgate_database_clock_ahead_seconds") < -29
        log = (tmp_path / "ahead.log").read_text()
        assert "this host's clock differs from the database server's" in log
