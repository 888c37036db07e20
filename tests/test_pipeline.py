"""Durable ingestion and delivery: webhook receivers, inbox, dispatcher failures.

Webhooks are real HTTP deliveries from the simulators (or signed by the test where the
test needs a bad one) into the served gateway; the gateway's loops are driven step by
step so every assertion waits on work, not on time. The dispatcher's clock is a fake
that the tests move, so a Retry-After or a backoff is observed without waiting for it.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import httpx
import msgspec

from adapters import signing
from app.errors import VendorError
from app.inbox import EVENT_BACKOFF_MAX_S, EVENT_RETRY_WINDOW, MAX_EVENT_ATTEMPTS
from app.model import VendorObject, utcnow
from app.store import Event, Store
from tests.admin_support import KEY
from tests.contract.kits import KITS
from tests.rig import ALL_RESOLVED, Rig, linked, running_rig, statuses


class FakeClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def use_clock(rig: Rig, clock: Callable[[], datetime]) -> None:
    g = rig.gateway
    g.clock = g.dispatcher.clock = g.engine.clock = g.worker.clock = g.pollers.clock = clock


def signed_inboxops(
    body: bytes, *, secret: str | None = None, ts: int | None = None
) -> dict[str, str]:
    return signing.standard_headers(
        secret or KITS["inboxops"].webhook_secret,
        "msg_" + uuid.uuid4().hex,
        int(utcnow().timestamp()) if ts is None else ts,
        body,
    )


async def event_count(rig: Rig) -> int:
    async with rig.gateway.store.tx() as tx:
        return len(await tx.list_events(source="webhook", limit=1000))


# -- receivers -----------------------------------------------------------------------------


async def test_bad_deliveries_get_a_clear_4xx_and_store_nothing(store: Store) -> None:
    async with (
        running_rig(store, serve_gateway=True) as rig,
        httpx.AsyncClient(base_url=rig.gateway_url) as client,
    ):
        ticket = {
            "id": "evt_1",
            "type": "ticket.updated",
            "created_at": utcnow().isoformat(),
            "data": {},
        }
        good = msgspec.json.encode(ticket)
        cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
            ("inboxops", good, {}, 401, "signature"),
            (
                "inboxops",
                good,
                signed_inboxops(good, secret=KITS["inboxops"].other_secret),
                401,
                "secret",
            ),
            (
                "inboxops",
                good,
                signed_inboxops(good, ts=int(utcnow().timestamp()) - 3600),
                401,
                "tolerance",
            ),
            ("inboxops", b"{not json", signed_inboxops(b"{not json"), 400, "JSON"),
            (
                "inboxops",
                b'{"type": "ticket.exploded"}',
                signed_inboxops(b'{"type": "ticket.exploded"}'),
                422,
                "",
            ),
            ("zendesk", good, signed_inboxops(good), 404, "zendesk"),
        ]
        for system, body, headers, status, reason in cases:
            response = await client.post(f"/webhooks/{system}", content=body, headers=headers)
            assert response.status_code == status, (system, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert reason.lower() in response.json()["detail"].lower()
        huge = b'{"pad": "' + b"x" * (rig.gateway.settings.server.max_body_bytes + 1) + b'"}'
        response = await client.post(
            "/webhooks/inboxops", content=huge, headers=signed_inboxops(huge)
        )
        assert response.status_code == 413
        assert await event_count(rig) == 0


async def test_tampered_delivery_changes_nothing(store: Store) -> None:
    async with (
        running_rig(store, serve_gateway=True) as rig,
        httpx.AsyncClient(base_url=rig.gateway_url) as client,
    ):
        item_id, _ids = await linked(rig)
        ticket = await rig.gateway.adapters["inboxops"].get(
            (await rig.links(item_id))["inboxops"].ref  # type: ignore[arg-type]
        )
        payload = {
            "id": "evt_x",
            "type": "ticket.updated",
            "created_at": utcnow().isoformat(),
            "data": {**ticket.raw, "status": "resolved"},
        }
        body = msgspec.json.encode(payload)
        headers = signed_inboxops(body)
        tampered = body.replace(b'"resolved"', b'"closed"')
        response = await client.post("/webhooks/inboxops", content=tampered, headers=headers)
        assert response.status_code == 401
        await rig.gateway.worker.run_until_idle()
        assert (await rig.only_item()).status.value == "open"
        assert await event_count(rig) == 0


async def test_webhooks_drive_the_sync_and_duplicates_are_processed_once(store: Store) -> None:
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        _item_id, ids = await linked(rig)
        before = await rig.write_counts()
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.flush_webhooks()
        deliveries = [d for d in rig.sims["inboxops"].kit.deliveries if d.delivered]
        assert deliveries, "the ticket change was delivered to the gateway"
        # no poll: the webhook alone carries the change
        await rig.gateway.worker.run_until_idle()
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        # the vendor delivers the same event again (its retry after a lost 2xx)
        last = deliveries[-1]
        body = msgspec.json.encode(last.body)
        headers = signing.standard_headers(
            KITS["inboxops"].webhook_secret, last.id, int(utcnow().timestamp()), body
        )
        async with httpx.AsyncClient(base_url=rig.gateway_url) as client:
            again = await client.post("/webhooks/inboxops", content=body, headers=headers)
        assert again.status_code == 202 and again.json()["status"] == "duplicate"
        await rig.gateway.worker.run_until_idle()
        await rig.gateway.dispatcher.run_until_idle()
        assert await rig.writes_since(before) == {
            "hookstream": 1,
            "devhelm": 1,
            "inboxops": 0,
            "incidentio": 1,
        }


async def test_a_missed_webhook_is_caught_by_the_next_poll(store: Store) -> None:
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        _item_id, ids = await linked(rig)
        await rig.control["incidentio"].put("/_sim/webhook", json={"url": None})
        await rig.human("incidentio", ids["incidentio"], status="completed")
        await rig.gateway.worker.run_until_idle()
        assert (await rig.only_item()).status.value == "open"
        await rig.poll("incidentio")
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.only_item()).status.value == "resolved"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"


async def test_a_hint_makes_the_object_be_fetched_at_once(store: Store) -> None:
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        await rig.open_issue()  # hookstream sends its issue_opened notification
        await rig.flush_webhooks()
        await rig.gateway.worker.run_until_idle()  # fetches the issue named by the hint
        await rig.gateway.dispatcher.run_until_idle()
        item = await rig.only_item()
        links = await rig.links(item.id)
        assert all(link.external_id for link in links.values())
        async with rig.gateway.store.tx() as tx:
            polls = await tx.list_events(source="poll")
        assert polls == [], "no poll was needed"


async def hookstream_events(rig: Rig) -> list[Event]:
    async with rig.gateway.store.tx() as tx:
        return await tx.list_events(system="hookstream", source="webhook")


async def test_a_hinted_fetch_is_retried_through_an_outage_longer_than_the_crash_limit(
    store: Store,
) -> None:
    """hookstream down for more tries than a crashing event gets: its issue notification
    is kept and retried, and the work item and its three creates are made once it is up."""
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        outage = MAX_EVENT_ATTEMPTS + 4
        await rig.control["hookstream"].post(
            "/_sim/faults", json={"status": 503, "count": outage, "methods": ["GET"]}
        )
        issue = await rig.open_issue()
        await rig.flush_webhooks()
        for _ in range(outage):
            await rig.gateway.worker.run_until_idle()
            (event,) = await hookstream_events(rig)
            assert event.state == "pending", event.outcome
            clock.advance(EVENT_BACKOFF_MAX_S)  # the retry is due
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "done"
        assert event.attempts == outage + 1
        await rig.gateway.dispatcher.run_until_idle()
        item = await rig.only_item()
        links = await rig.links(item.id)
        assert links["hookstream"].external_id == issue
        assert all(links[s].external_id for s in ("devhelm", "inboxops", "incidentio"))


async def test_a_hinted_fetch_answered_429_waits_its_retry_after_without_lengthening_backoffs(
    store: Store,
) -> None:
    """A 429 asks to wait: the notification is tried again after its ``Retry-After``, and
    the 429s are not counted, so the backoff after a real failure that follows them is
    the first one's, not one grown by every 429 before it (which once held notifications
    for minutes after an outage ended)."""
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        waits = 6
        await rig.control["hookstream"].post(
            "/_sim/faults",
            json={"status": 429, "retry_after": 5, "count": waits, "methods": ["GET"]},
        )
        await rig.control["hookstream"].post(
            "/_sim/faults", json={"status": 500, "count": 1, "methods": ["GET"]}
        )
        await rig.open_issue()
        await rig.flush_webhooks()
        for _ in range(waits):
            await rig.gateway.worker.run_until_idle()
            (event,) = await hookstream_events(rig)
            assert (event.state, event.attempts) == ("pending", 0), event.outcome
            assert "HTTP 429" in (event.outcome or "")
            clock.advance(4)
            await rig.gateway.worker.run_until_idle()  # not due before its Retry-After
            assert (await hookstream_events(rig))[0].outcome == event.outcome
            clock.advance(1)
        await rig.gateway.worker.run_until_idle()  # the 500: the first real failure
        (event,) = await hookstream_events(rig)
        assert (event.state, event.attempts) == ("pending", 1)
        assert "HTTP 500" in (event.outcome or "")
        clock.advance(1)  # the first backoff (0.5 to 1 s), not the seventh (32 to 64 s)
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "done", event.outcome


async def test_a_hinted_fetch_waits_out_its_systems_429_deferral_without_a_call(
    store: Store,
) -> None:
    """A 429 met by a write defers the whole system: an issue notification claimed in
    that wait is not fetched (a rate-limited vendor gets no reads either, and a read sent
    into the wait would likely fail a try); it is due again when the wait ends, the try
    not counted, and is fetched then."""
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        async with rig.gateway.store.tx() as tx:
            await tx.set_system("hookstream", deferred_until=clock() + timedelta(seconds=120))
        await rig.open_issue()
        await rig.flush_webhooks()
        await rig.control["hookstream"].delete("/_sim/requests")
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert (event.state, event.attempts) == ("pending", 0), event.outcome
        assert "asked to wait (429)" in (event.outcome or "")
        logged = (await rig.control["hookstream"].get("/_sim/requests")).json()["requests"]
        assert logged == [], logged
        # not due before the wait ends (real seconds pass too: a slow machine takes some)
        clock.advance(90)
        await rig.gateway.worker.run_until_idle()
        assert (await hookstream_events(rig))[0].outcome == event.outcome
        clock.advance(31)
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "done", event.outcome
        assert event.attempts == 1


async def test_a_hinted_fetch_answered_429_for_ever_is_given_up_after_the_retry_window(
    store: Store,
) -> None:
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        await rig.control["hookstream"].post(
            "/_sim/faults",
            json={"status": 429, "retry_after": 60, "count": 1000, "methods": ["GET"]},
        )
        await rig.open_issue()
        await rig.flush_webhooks()
        await rig.gateway.worker.run_until_idle()
        clock.advance(EVENT_RETRY_WINDOW.total_seconds() - 60)
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert (event.state, event.attempts) == ("pending", 0)
        clock.advance(60)
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "failed" and "HTTP 429" in (event.outcome or ""), event.outcome


async def test_a_hinted_fetch_is_given_up_after_the_retry_window_and_an_admin_can_retry_it(
    store: Store,
) -> None:
    async with (
        running_rig(store, serve_gateway=True, webhooks=True) as rig,
        httpx.AsyncClient(base_url=rig.gateway_url, headers={"X-Admin-Key": KEY}) as admin,
    ):
        clock = FakeClock()
        use_clock(rig, clock)
        # a vendor asking for an absurd wait is tried again after the longest backoff
        await rig.control["hookstream"].post(
            "/_sim/faults", json={"status": 429, "retry_after": 1e12, "methods": ["GET"]}
        )
        await rig.control["hookstream"].post(
            "/_sim/faults", json={"status": 500, "count": 1000, "methods": ["GET"]}
        )
        await rig.open_issue()
        await rig.flush_webhooks()
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "pending" and "HTTP 429" in (event.outcome or ""), event.outcome
        assert event.attempts == 0, "a 429 is the vendor asking to wait, not a failed try"
        # more tries than a crashing event gets, within the window: still retried
        for tries in range(1, MAX_EVENT_ATTEMPTS + 2):
            clock.advance(EVENT_BACKOFF_MAX_S)
            await rig.gateway.worker.run_until_idle()
            (event,) = await hookstream_events(rig)
            assert event.state == "pending" and event.attempts == tries
        clock.advance(EVENT_RETRY_WINDOW.total_seconds())
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "failed"
        assert (event.outcome or "").startswith(f"gave up after {MAX_EVENT_ATTEMPTS + 2} attempts")
        async with rig.gateway.store.tx() as tx:
            _items, total = await tx.search_items()
        assert total == 0, "no work item from an event given up"

        # hookstream is back; an admin retries the event
        await rig.control["hookstream"].delete("/_sim/faults")
        problem = await admin.post("/admin/events/777777/retry")
        assert problem.status_code == 404 and "777777" in problem.json()["detail"]
        problem = await admin.post("/admin/events/%C2%B9/retry")
        assert problem.status_code == 400 and "event_id" in problem.json()["detail"]
        retried = await admin.post(f"/admin/events/{event.id}/retry")
        assert retried.status_code == 200, retried.text
        body = retried.json()
        assert (body["state"], body["attempts"], body["outcome"]) == (
            "pending",
            0,
            "retried by admin",
        )
        await rig.gateway.worker.run_until_idle()
        (event,) = await hookstream_events(rig)
        assert event.state == "done"
        again = await admin.post(f"/admin/events/{event.id}/retry")
        assert again.status_code == 409 and "done" in again.json()["detail"]
        await rig.gateway.dispatcher.run_until_idle()
        links = await rig.links((await rig.only_item()).id)
        assert all(links[s].external_id for s in ("devhelm", "inboxops", "incidentio"))


async def test_a_devhelm_platform_event_polls_a_webhook_only_system(store: Store) -> None:
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        assert rig.gateway.settings.systems["devhelm"].poll_interval_s == 0
        _item_id, ids = await linked(rig)
        # a person resolves the incident; DevHelm sends no webhook for status-page incidents
        await rig.human("devhelm", ids["devhelm"], status="RESOLVED")
        async with rig.gateway.store.tx() as tx:
            polls_before = len(await tx.list_events(system="devhelm", source="poll", limit=1000))
        # ... but a platform event arrives, which can only ask for a poll
        response = await rig.control["devhelm"].post(
            "/_sim/platform-events", json={"type": "incident.resolved", "data": {}}
        )
        assert response.status_code == 202, response.text
        await rig.flush_webhooks()
        assert [d.delivered for d in rig.sims["devhelm"].kit.deliveries] == [True]
        await rig.gateway.worker.run_until_idle()
        requested = rig.gateway.pollers.pending_requests()
        assert requested, "the hint started a poll of devhelm"
        await asyncio.gather(*requested)
        assert (await rig.only_item()).status.value == "resolved"
        async with rig.gateway.store.tx() as tx:
            polls = await tx.list_events(system="devhelm", source="poll", limit=1000)
        assert len(polls) == polls_before + 1 and polls[0].state == "done"
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_poll_requests_coalesce_while_one_is_in_flight(store: Store) -> None:
    async with running_rig(store) as rig:
        pollers = rig.gateway.pollers
        adapter = rig.gateway.adapters["devhelm"]
        listing = adapter.list_changed
        started, release = asyncio.Event(), asyncio.Event()
        calls = 0

        async def held(since: datetime | None) -> AsyncIterator[list[VendorObject]]:
            nonlocal calls
            calls += 1
            started.set()
            await release.wait()  # the poll stays in flight until the test lets it go
            async for page in listing(since):
                yield page

        adapter.list_changed = held  # type: ignore[method-assign]
        for _ in range(5):  # hints before the poll has begun are answered by that poll
            pollers.request("devhelm")
        await asyncio.wait_for(started.wait(), timeout=10)
        for _ in range(3):  # hints while it is in flight make exactly one more poll
            pollers.request("devhelm")
        assert len(pollers.pending_requests()) == 1
        release.set()
        await pollers.close()
        assert pollers.pending_requests() == []
        assert calls == 2
        async with rig.gateway.store.tx() as tx:
            polls = await tx.list_events(system="devhelm", source="poll", limit=1000)
        assert [p.state for p in polls] == ["done", "done"]


# -- delivery failures ---------------------------------------------------------------------


async def resolve_against_a_503_and_a_timeout(
    rig: Rig, ids: dict[str, str], *, devhelm_503s: int
) -> None:
    """A person resolves the hookstream issue; DevHelm answers the next ``devhelm_503s``
    PUTs 503 and incident.io's next PUT hangs past the timeout; one dispatch round."""
    await rig.control["devhelm"].post(
        "/_sim/faults", json={"status": 503, "count": devhelm_503s, "methods": ["PUT"]}
    )
    await rig.control["incidentio"].post(
        "/_sim/faults", json={"timeout_s": 3, "count": 1, "methods": ["PUT"]}
    )
    await rig.human("hookstream", ids["hookstream"], status="resolved")
    await rig.poll("hookstream")
    await rig.gateway.dispatcher.run_until_idle()


async def test_transient_failures_and_timeouts_are_retried_with_backoff(store: Store) -> None:
    async with running_rig(store) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        item_id, ids = await linked(rig)
        await resolve_against_a_503_and_a_timeout(rig, ids, devhelm_503s=2)
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "resolved"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] != "RESOLVED"
        for _ in range(4):  # each retry comes due after its backoff
            clock.advance(rig.gateway.settings.dispatcher.backoff_max_s)
            await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        links = await rig.links(item_id)
        async with rig.gateway.store.tx() as tx:
            attempts = await tx.attempts_of(links["devhelm"].id)
        assert [a.outcome for a in attempts][-3:] == ["retry", "retry", "ok"]
        assert attempts[-2].status_code == 503


async def test_persistent_transient_failures_are_dead_lettered_after_max_attempts(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        item_id, ids = await linked(rig)
        max_attempts = rig.gateway.settings.dispatcher.max_attempts
        await rig.control["inboxops"].post(
            "/_sim/faults", json={"status": 500, "count": 1000, "methods": ["PATCH"]}
        )
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_until_idle()
        rounds = 0
        while not (await rig.links(item_id))["inboxops"].dead:
            rounds += 1
            assert rounds < 3 * max_attempts, "the link was never dead-lettered"
            clock.advance(rig.gateway.settings.dispatcher.backoff_max_s)  # the backoff is due
            await rig.gateway.dispatcher.run_until_idle()
        links = await rig.links(item_id)
        dead = links["inboxops"]
        assert dead.dirty and dead.dead_reason is not None
        assert f"gave up after {max_attempts} attempts" in dead.dead_reason
        assert "(HTTP 500)" in dead.dead_reason
        async with rig.gateway.store.tx() as tx:
            assert [link.id for link in await tx.outbox("dead")] == [dead.id]
            attempts = await tx.attempts_of(dead.id)
        updates = [a for a in attempts if a.action == "update"]
        assert len(updates) == max_attempts
        assert [a.outcome for a in updates] == ["retry"] * (max_attempts - 1) + ["dead"]
        assert {a.status_code for a in updates} == {500}
        # a dead link is not tried again, however much time passes
        patches = sum(1 for r in rig.sims["inboxops"].kit.requests if r.method == "PATCH")
        clock.advance(3600)
        await rig.gateway.dispatcher.run_until_idle()
        assert sum(1 for r in rig.sims["inboxops"].kit.requests if r.method == "PATCH") == patches
        # the other systems were written and are in step
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "open"
        assert await statuses(
            rig, {s: ids[s] for s in ("hookstream", "devhelm", "incidentio")}
        ) == {
            "hookstream": "resolved",
            "devhelm": "RESOLVED",
            "incidentio": "completed",
        }
        version = (await rig.only_item()).version
        for system in ("hookstream", "devhelm", "incidentio"):
            assert not links[system].dirty and not links[system].dead, system
        assert links["devhelm"].synced_version == links["incidentio"].synced_version == version


async def test_429_defers_that_system_until_retry_after_and_others_flow(store: Store) -> None:
    async with running_rig(store) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        _item_id, ids = await linked(rig)
        await rig.control["devhelm"].post(
            "/_sim/faults", json={"status": 429, "retry_after": 30, "count": 1, "methods": ["PUT"]}
        )
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "resolved"
        assert (await rig.object("incidentio", ids["incidentio"]))["status"] == "completed"
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "INVESTIGATING"
        puts = len(rig.sims["devhelm"].kit.requests)
        clock.advance(29)
        await rig.gateway.dispatcher.run_until_idle()
        assert len(rig.sims["devhelm"].kit.requests) == puts, "no call before Retry-After"
        clock.advance(2)
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"


async def test_a_rejected_write_is_dead_lettered_and_the_rest_still_sync(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        await rig.control["incidentio"].post(
            "/_sim/faults", json={"status": 422, "count": 1, "methods": ["PUT"]}
        )
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("devhelm", ids["devhelm"]))["status"] == "RESOLVED"
        assert (await rig.object("inboxops", ids["inboxops"]))["status"] == "resolved"
        async with rig.gateway.store.tx() as tx:
            (dead,) = await tx.outbox("dead")
            assert dead.system == "incidentio" and "injected" in (dead.dead_reason or "")
            assert await tx.revive(dead.id) == 1
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("incidentio", ids["incidentio"]))["status"] == "completed"


async def test_a_retried_create_after_a_lost_answer_is_not_duplicated(store: Store) -> None:
    async with running_rig(store) as rig:
        clock = FakeClock()
        use_clock(rig, clock)
        for system in ("devhelm", "inboxops", "incidentio"):
            await rig.control[system].post(
                "/_sim/faults", json={"status": 502, "count": 1, "methods": ["POST"], "after": True}
            )
        await rig.open_issue()
        await rig.poll("hookstream")
        await rig.gateway.dispatcher.run_until_idle()
        clock.advance(rig.gateway.settings.dispatcher.backoff_max_s)
        await rig.gateway.dispatcher.run_until_idle()
        for system in ("devhelm", "inboxops", "incidentio"):
            assert len(await rig.objects(system)) == 1, system
        item = await rig.only_item()
        assert all(link.external_id for link in (await rig.links(item.id)).values())


async def test_a_failed_write_leaves_no_garbage_for_the_collector(store: Store) -> None:
    """A failed write's error outlives the attempt (it is recorded in a batch later). Kept
    with its traceback it held the attempt's own frame, which held the attempt: a
    reference cycle, freed only by the collector. The gateway runs the collector's
    later passes rarely (app.cli.main.GC_THRESHOLDS), so under vendor timeouts these
    cycles piled up by the thousand (docs/reliability.md, point 9). A failed write,
    an answered 503 or a timeout, must leave no error in a cycle."""
    gc.collect()
    gc.disable()  # the cycles made from here on stay until the collection below
    try:
        async with running_rig(store) as rig:
            clock = FakeClock()
            use_clock(rig, clock)
            item_id, ids = await linked(rig)
            await resolve_against_a_503_and_a_timeout(rig, ids, devhelm_503s=1)
            links = await rig.links(item_id)
            async with rig.gateway.store.tx() as tx:
                failed = [
                    (await tx.attempts_of(links[s].id))[-1] for s in ("devhelm", "incidentio")
                ]
        # the gateway is stopped: what is left of its errors is left in cycles
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds, to look at
        gc.collect()
        in_cycles = [o for o in gc.garbage if isinstance(o, VendorError)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert links["devhelm"].attempts == links["incidentio"].attempts == 1, "both failed"
    assert failed[0].status_code == 503 and "timeout" in (failed[1].error or "")
    assert in_cycles == [], "a failed write's error was left in a reference cycle"
