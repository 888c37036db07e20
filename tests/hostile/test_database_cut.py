"""The database's connections cut while changes stream through the gateway (a PostgreSQL
restart, a failover, a firewall ending sessions): nothing acknowledged is lost and
nothing is written twice.

A real ``syncgate serve`` on PostgreSQL gets a burst of signed InboxOps changes; half-way
through, every session on its database is ended from outside. Transactions on the cut
connections fail (a webhook caught in one is answered 5xx, and the vendor's sender
retries it); the pool then replaces its connections. Every change must still reach
DevHelm and incident.io, each ticket's objects exactly once."""

from __future__ import annotations

import asyncio
import os
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
from tests.conftest import cut_connections, open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TICKETS = 30
ROUNDS = 4


async def test_connections_cut_mid_burst_lose_no_change_and_write_nothing_twice(
    tmp_path: Path,
) -> None:
    store = await open_store("postgres", tmp_path)  # migrated and empty
    await store.close()
    database = os.environ["SYNCGATE_TEST_POSTGRES_URL"]
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        config = tmp_path / "config.yaml"
        write_config(
            config,
            database,
            {n: str(c.base_url) for n, c in control.items()},
            dispatcher={"backoff_base_s": 0.1, "backoff_max_s": 1},
        )
        gateway = GatewayProcess(config, port, "cut", tmp_path / "gateway.log")
        admin = admin_client(gateway.url)
        try:
            await gateway.ready()
            tickets = []
            for n in range(TICKETS):
                response = await control["inboxops"].post(
                    "/_sim/seed", json={"subject": f"Cut ticket {n} v0"}
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

            edits = asyncio.Semaphore(8)

            async def edit(n: int, ticket: str, version: int) -> None:
                async with edits:
                    response = await control["inboxops"].patch(
                        f"/_sim/objects/{ticket}", json={"subject": f"Cut ticket {n} v{version}"}
                    )
                assert response.status_code == 200, response.text

            cut = 0
            for version in range(1, ROUNDS + 1):
                await asyncio.gather(*(edit(n, t, version) for n, t in enumerate(tickets)))
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
        finally:
            await admin.aclose()
            await gateway.stop()
