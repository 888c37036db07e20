"""The database's connections cut while changes stream through the gateway (a PostgreSQL
restart, a failover, a firewall ending sessions): nothing acknowledged is lost and
nothing is written twice.

A real ``syncgate serve`` on PostgreSQL gets a burst of signed InboxOps changes; half-way
through, every session on its database is ended from outside. Transactions on the cut
connections fail (a webhook caught in one is answered 5xx, and the vendor's sender
retries it); the pool then replaces its connections. Every change must still reach
DevHelm and incident.io, each ticket's objects exactly once. Then the sessions are ended
again while the gateway is idle (as a nightly restart would), and one more round of
changes must reach them too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.blackbox import (
    eventually,
    gateway_on_postgres,
    retitle,
    seed_fanned_out,
    settled,
    sim_objects,
)
from tests.conftest import cut_connections

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TICKETS = 30
ROUNDS = 4


async def test_connections_cut_mid_burst_lose_no_change_and_write_nothing_twice(
    tmp_path: Path,
) -> None:
    database = os.environ["SYNCGATE_TEST_POSTGRES_URL"]
    async with gateway_on_postgres(
        tmp_path, "cut", dispatcher={"backoff_base_s": 0.1, "backoff_max_s": 1}
    ) as (sims, control, gateway, admin):
        tickets = await seed_fanned_out(
            control, admin, [f"Cut ticket {n} v0" for n in range(TICKETS)]
        )

        async def all_delivered() -> None:
            """Every webhook InboxOps sent got a 2xx in the end (its sender retries)."""
            await sims["inboxops"].kit.flush()
            undelivered = [d for d in sims["inboxops"].kit.deliveries if not d.delivered]
            assert not undelivered, undelivered[:3]

        cut = 0
        for version in range(1, ROUNDS + 1):
            await retitle(control, tickets, [f"Cut ticket {n} v{version}" for n in range(TICKETS)])
            if version == ROUNDS // 2:  # the webhooks of this round still on their way
                cut = await cut_connections(database)
        assert cut >= 1, "the gateway held no connection to cut"
        await all_delivered()
        final = {f"Cut ticket {n} v{ROUNDS}" for n in range(TICKETS)}

        async def propagated() -> bool:
            if not await settled(admin):
                return False
            for name in ("devhelm", "incidentio"):
                titles = {str(o["title"]) for o in await sim_objects(control[name])}
                if final - titles:
                    return False
            return True

        await eventually(propagated, timeout_s=60, what="every change propagated")

        # idle now (settled): cut again, then one more round
        assert await cut_connections(database) >= 1, "the gateway held no connection to cut"
        last = ROUNDS + 1
        await retitle(control, tickets, [f"Cut ticket {n} v{last}" for n in range(TICKETS)])
        await all_delivered()
        final = {f"Cut ticket {n} v{last}" for n in range(TICKETS)}
        await eventually(propagated, timeout_s=60, what="the round after the idle cut propagated")
        for name in ("devhelm", "incidentio"):
            assert len(await sim_objects(control[name])) == TICKETS, name
        assert gateway.proc.poll() is None, "the gateway exited"
