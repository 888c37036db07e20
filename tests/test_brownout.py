"""A vendor that hangs (a brownout: calls that never answer until the gateway's timeout)
holds at most ``dispatcher.system_concurrency`` of the dispatcher's writes; the other
systems keep flowing. A real ``syncgate serve``, the simulators over loopback, the hang
injected through ``/_sim/faults``; the tests wait on conditions with deadlines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.blackbox import (
    admin_client,
    eventually,
    free_port,
    settled,
    sim_objects,
    simulators,
    sqlite_gateway,
)
from tests.contract.kits import KITS
from tests.rig import SYSTEMS

pytestmark = pytest.mark.slow

#: The gateway gives up on a call to the hanging vendor after this (its ``timeout_s``):
#: longer than the deadline below, so what waits behind a hung call cannot make it.
VENDOR_TIMEOUT_S = 15
FOLLOW_UPS_DEADLINE_S = 10
TICKETS = 24


async def test_a_hanging_vendor_holds_its_share_of_writes_and_the_others_keep_flowing(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (_sims, control):
        # every DevHelm create hangs until the simulator's fault times out
        response = await control["devhelm"].post(
            "/_sim/faults",
            json={"timeout_s": VENDOR_TIMEOUT_S + 5, "count": 10_000, "methods": ["POST"]},
        )
        assert response.status_code < 300, response.text
        gateway = sqlite_gateway(
            tmp_path,
            control,
            port,
            "brownout",
            # six writes in flight, three at most to one system (the default: half)
            dispatcher={"concurrency": 6},
            systems={"devhelm": {"timeout_s": VENDOR_TIMEOUT_S}},
        )
        try:
            await gateway.ready()
            subjects = [f"Checkout fails for customer {n}" for n in range(TICKETS)]
            for subject in subjects:
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201

            async def follow_ups() -> Counter[str]:
                return Counter(str(o["title"]) for o in await sim_objects(control["incidentio"]))

            async def every_follow_up_made() -> bool:
                made = await follow_ups()
                return all(made[s] >= 1 for s in subjects)

            # DevHelm holds its three writes for 15 s each; incident.io's 24 creates go
            # through the other three slots meanwhile
            await eventually(
                every_follow_up_made,
                timeout_s=FOLLOW_UPS_DEADLINE_S,
                what="every follow-up created while DevHelm hangs",
            )
            assert not await sim_objects(control["devhelm"]), "DevHelm's creates all hang"

            # DevHelm recovers: every incident is made, once
            response = await control["devhelm"].delete("/_sim/faults")
            assert response.status_code < 300
            async with admin_client(gateway.url) as admin:
                await eventually(
                    lambda: settled(admin), timeout_s=90, what="DevHelm's backlog drained"
                )
            incidents = Counter(str(o["title"]) for o in await sim_objects(control["devhelm"]))
            assert incidents == Counter(subjects)
            assert (await follow_ups()) == Counter(subjects)
        finally:
            await gateway.stop()


async def test_a_notification_whose_fetch_hangs_holds_up_no_other_event(tmp_path: Path) -> None:
    """hookstream's issue notifications name the issue to read; its reads hang. The
    InboxOps tickets that arrive after them are applied and fanned out meanwhile: the
    inbox does not wait on one vendor's reads to apply another's events."""
    port = free_port()
    async with simulators(
        f"http://127.0.0.1:{port}", SYSTEMS, webhooks=("hookstream", "inboxops", "incidentio")
    ) as (sims, control):
        gateway = sqlite_gateway(
            tmp_path,
            control,
            port,
            "brownout",
            systems={"hookstream": {"timeout_s": VENDOR_TIMEOUT_S}},
        )
        try:
            await gateway.ready()
            fault = {"timeout_s": VENDOR_TIMEOUT_S + 5, "count": 10_000, "methods": ["GET"]}
            assert (await control["hookstream"].post("/_sim/faults", json=fault)).is_success
            for n in range(3):  # three notifications whose issues cannot be read
                await KITS["hookstream"].seed(control["hookstream"], n)
            await sims["hookstream"].kit.flush()
            assert all(d.delivered for d in sims["hookstream"].kit.deliveries)
            subjects = [f"Checkout fails for customer {n}" for n in range(TICKETS)]
            for subject in subjects:
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201

            async def every_ticket_fanned_out() -> bool:
                made = Counter(str(o["title"]) for o in await sim_objects(control["incidentio"]))
                return all(made[s] >= 1 for s in subjects)

            await eventually(
                every_ticket_fanned_out,
                timeout_s=FOLLOW_UPS_DEADLINE_S,
                what="every ticket fanned out while hookstream's reads hang",
            )
        finally:
            await gateway.stop()
