"""A burst of changes on PostgreSQL reaches every vendor long before a lease could lapse.

Found by the soak (docs/reliability.md): after a burst, some writes waited one whole
``dispatcher.lease_s`` before they were sent, as if their links stayed claimed. Here a
real ``syncgate serve`` on PostgreSQL, with a 30 s lease, gets a burst of signed InboxOps
changes (several per ticket, so writes finish while their items change again and their
links are claimed again at once, next to the inbox's transactions) and every change must
be in DevHelm and incident.io within a bound far below the lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.blackbox import (
    eventually,
    gateway_on_postgres,
    retitle,
    seed_fanned_out,
    sim_objects,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_S = 30.0
#: Far below the lease: a write that waited for its claim to lapse cannot make it.
BOUND_S = 12.0
TICKETS = 60
ROUNDS = 6


async def test_a_burst_of_changes_reaches_every_vendor_well_within_one_lease(
    tmp_path: Path,
) -> None:
    dispatcher = {"lease_s": LEASE_S, "backoff_base_s": 0.1, "backoff_max_s": 1}
    async with gateway_on_postgres(tmp_path, "burst", dispatcher=dispatcher) as (
        sims,
        control,
        _,
        admin,
    ):
        tickets = await seed_fanned_out(
            control, admin, [f"Burst ticket {n} v0" for n in range(TICKETS)]
        )
        # the burst: every ticket changes ROUNDS times, as fast as the webhooks go
        for version in range(1, ROUNDS + 1):
            await retitle(
                control, tickets, [f"Burst ticket {n} v{version}" for n in range(TICKETS)]
            )
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
