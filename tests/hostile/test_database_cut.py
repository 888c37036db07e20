"""The database's connections cut while changes stream through the gateway (a PostgreSQL
restart, a failover, a firewall ending sessions): nothing acknowledged is lost and
nothing is written twice.

A real ``syncgate serve`` on PostgreSQL gets a burst of signed InboxOps changes; half-way
through, every session on its database is ended from outside. Transactions on the cut
connections fail (a webhook caught in one is answered 5xx, and the vendor's sender
retries it); the pool then replaces its connections. Every change must still reach
DevHelm and incident.io, each ticket's objects exactly once."""

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
        cut = 0
        for version in range(1, ROUNDS + 1):
            await retitle(control, tickets, [f"Cut ticket {n} v{version}" for n in range(TICKETS)])
            if version == ROUNDS // 2:  # the webhooks of this round still on their way
                cut = await cut_connections(database)
        assert cut >= 1, "the gateway held no connection to cut"
        await sims["inboxops"].kit.flush()
        undelivered = [d for d in sims["inboxops"].kit.deliveries if not d.delivered]
        assert not undelivered, undelivered[:3]
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
        for name in ("devhelm", "incidentio"):
            assert len(await sim_objects(control[name])) == TICKETS, name
        assert gateway.proc.poll() is None, "the gateway exited"
