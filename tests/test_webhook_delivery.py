"""At-least-once webhook delivery, end to end: a vendor keeps retrying on its schedule
while the way to the gateway fails (500, down, an answer lost after the gateway stored
the delivery), and the gateway ends up applying the change exactly once.

The network between the InboxOps simulator and the served gateway is a transport that
fails the first attempts as told and forwards the rest; retries run on the vendor's real
schedule, time-compressed (``WEBHOOK_TIME_SCALE``), so the test waits on deliveries, not
on the clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from adapters._simkit import SVIX_SCHEDULE
from app.store import Store
from tests.rig import ALL_RESOLVED, Rig, linked, running_rig, statuses

#: What one attempt meets on the way to the gateway.
FAIL_500 = "500"  # something in front of the gateway answers 500
DOWN = "down"  # nothing listens: connection refused
LOST = "lost"  # the gateway stored the delivery, but its 202 never reached the vendor


class FlakyNetwork(httpx.AsyncBaseTransport):
    """Forwards to the real gateway, except for the attempts scripted in ``plan``."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.forwarded: list[int] = []  # statuses the gateway answered
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        step = self.plan.pop(0) if self.plan else None
        if step == FAIL_500:
            return httpx.Response(500, request=request)
        if step == DOWN:
            raise httpx.ConnectError("connection refused", request=request)
        response = await self._real.handle_async_request(request)
        await response.aread()
        self.forwarded.append(response.status_code)
        if step == LOST:
            raise httpx.ReadError("connection reset before the answer", request=request)
        return response

    async def aclose(self) -> None:
        await self._real.aclose()


@asynccontextmanager
async def flaky_rig(store: Store) -> AsyncIterator[tuple[Rig, FlakyNetwork]]:
    network = FlakyNetwork()
    async with (
        httpx.AsyncClient(transport=network) as sender,
        running_rig(
            store, serve_gateway=True, webhooks=True, webhook_clients={"inboxops": sender}
        ) as rig,
    ):
        yield rig, network


async def webhook_events(rig: Rig) -> list[str]:
    async with rig.gateway.store.tx() as tx:
        events = await tx.list_events(system="inboxops", source="webhook", limit=1000)
    return [e.delivery_id for e in events]


@pytest.mark.parametrize(
    "plan",
    [
        pytest.param([FAIL_500, DOWN, FAIL_500], id="500-down-500"),
        pytest.param([LOST, LOST], id="answer-lost-twice"),
    ],
)
async def test_a_change_delivered_after_failures_is_applied_once(
    store: Store, plan: list[str]
) -> None:
    async with flaky_rig(store) as (rig, network):
        _item_id, ids = await linked(rig)
        kit = rig.sims["inboxops"].kit
        sent_before = len(kit.deliveries)
        events_before = await webhook_events(rig)
        before = await rig.write_counts()

        network.plan = list(plan)
        await rig.human("inboxops", ids["inboxops"], status="resolved")
        await rig.flush_webhooks()

        [delivery] = kit.deliveries[sent_before:]
        assert delivery.delivered
        assert delivery.attempts == len(plan) + 1
        assert delivery.delays == list(SVIX_SCHEDULE[1 : len(plan) + 1])
        if plan[0] == LOST:
            # the gateway stored the first attempt; the retries were named duplicates
            assert network.forwarded[-3:] == [202, 202, 202]
        new_events = [e for e in await webhook_events(rig) if e not in events_before]
        assert new_events == [delivery.id], "one event however many attempts"

        # no poll: the retried webhook alone carries the change, and it is applied once
        await rig.gateway.worker.run_until_idle()
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED
        assert await rig.writes_since(before) == {
            "hookstream": 1,
            "devhelm": 1,
            "inboxops": 0,
            "incidentio": 1,
        }
