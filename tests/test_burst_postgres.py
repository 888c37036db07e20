"""A burst of changes on PostgreSQL reaches every vendor long before a lease could lapse.

Found by the soak (docs/reliability.md): after a burst, some writes waited one whole
``dispatcher.lease_s`` before they were sent, as if their links stayed claimed. Here a
real ``syncgate serve`` on PostgreSQL, with a 30 s lease, gets a burst of signed InboxOps
changes (several per ticket, so writes finish while their items change again and their
links are claimed again at once, next to the inbox's transactions) and every change must
be in DevHelm and incident.io within a bound far below the lease."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.blackbox import (
    GatewayProcess,
    admin_client,
    eventually,
    free_port,
    settled,
    sim_objects,
    simulators,
    write_config,
)
from tests.conftest import open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_S = 30.0
#: Far below the lease: a write that waited for its claim to lapse cannot make it.
BOUND_S = 12.0
TICKETS = 60
ROUNDS = 6


async def test_a_burst_of_changes_reaches_every_vendor_well_within_one_lease(
    tmp_path: Path,
) -> None:
    store = await open_store("postgres", tmp_path)  # migrated and empty
    await store.close()
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        urls = {n: str(c.base_url) for n, c in control.items()}
        config = tmp_path / "config.yaml"
        write_config(
            config,
            os.environ["SYNCGATE_TEST_POSTGRES_URL"],
            urls,
            dispatcher={"lease_s": LEASE_S, "backoff_base_s": 0.1, "backoff_max_s": 1},
        )
        gateway = GatewayProcess(config, port, "burst", tmp_path / "gateway.log")
        admin = admin_client(gateway.url)
        try:
            await gateway.ready()
            tickets = []
            for n in range(TICKETS):
                response = await control["inboxops"].post(
                    "/_sim/seed", json={"subject": f"Burst ticket {n} v0"}
                )
                assert response.status_code == 201, response.text
                tickets.append(str(response.json()["data"]["id"]))

            async def created() -> bool:
                if not await settled(admin):
                    return False
                for name in ("devhelm", "incidentio"):
                    if len(await sim_objects(control[name])) < TICKETS:
                        return False
                return True

            await eventually(created, timeout_s=90, what="every ticket fanned out")

            # the burst: every ticket changes ROUNDS times, as fast as the webhooks go
            # (eight edits at a time: the simulator's own server is not under test)
            edits = asyncio.Semaphore(8)

            async def edit(n: int, ticket: str, version: int) -> None:
                async with edits:
                    response = await control["inboxops"].patch(
                        f"/_sim/objects/{ticket}",
                        json={"subject": f"Burst ticket {n} v{version}"},
                    )
                assert response.status_code == 200, response.text

            for version in range(1, ROUNDS + 1):
                await asyncio.gather(*(edit(n, t, version) for n, t in enumerate(tickets)))
            await sims["inboxops"].kit.flush()
            assert all(d.delivered for d in sims["inboxops"].kit.deliveries)
            acknowledged = time.monotonic()
            final = {f"Burst ticket {n} v{ROUNDS}" for n in range(TICKETS)}
            behind: dict[str, int] = {}

            async def propagated() -> bool:
                for name in ("devhelm", "incidentio"):
                    titles = {str(o["title"]) for o in await sim_objects(control[name])}
                    behind[name] = len(final - titles)
                return not any(behind.values())

            try:
                await eventually(propagated, timeout_s=BOUND_S, what="every change propagated")
            except AssertionError:
                raise AssertionError(
                    f"changes not written {BOUND_S} s after the burst (lease {LEASE_S} s): {behind}"
                ) from None
            assert time.monotonic() - acknowledged < LEASE_S / 2
        finally:
            await admin.aclose()
            await gateway.stop()
