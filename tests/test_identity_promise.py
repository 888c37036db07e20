"""Assignees cross systems through the identity map, under real timing: ``syncgate
serve`` in a process of its own, the simulators on loopback, a person assigning the
InboxOps ticket in InboxOps. A mapped agent reaches incident.io as that person's
incident.io user (people from config.yaml and from the admin API alike); an agent nobody
mapped is not written to incident.io, whose follow-up stays as it was, and the work
item's history says so; once mapped, the item names them by email and they are written
at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.incidentio.simulator import USER_IDS
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

pytestmark = pytest.mark.slow

ADA_AGENT = "6e2c7c5e-0000-4000-8000-00000000000a"
BO_AGENT = "6e2c7c5e-0000-4000-8000-00000000000b"
CAROL_AGENT = "6e2c7c5e-0000-4000-8000-00000000000c"  # in no identity
ADA_USER, BO_USER = USER_IDS


async def detail_of(admin: httpx.AsyncClient, ticket: str) -> dict[str, Any] | None:
    response = await admin.get("/lookup", params={"system": "inboxops", "external_id": ticket})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


async def follow_up(control: dict[str, httpx.AsyncClient], follow_up_id: str) -> dict[str, Any]:
    (found,) = [o for o in await sim_objects(control["incidentio"]) if o["id"] == follow_up_id]
    return found


async def test_an_inboxops_assignee_reaches_incidentio_as_the_same_person(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        config = tmp_path / "config.yaml"
        urls = {name: str(client.base_url) for name, client in control.items()}
        write_config(
            config,
            f"sqlite:///{tmp_path / 'gateway.db'}",
            urls,
            fields={"assignee": {}},
            identities=[
                {"email": "ada@example.com", "ids": {"inboxops": ADA_AGENT, "incidentio": ADA_USER}}
            ],
        )
        gateway = GatewayProcess(config, port, "ident", tmp_path / "gateway.log")
        async with admin_client(gateway.url) as admin:
            try:
                await gateway.ready()
                # bo comes from the admin API, not the config
                added = await admin.put(
                    "/identities/bo@example.com",
                    json={"ids": {"inboxops": BO_AGENT, "incidentio": BO_USER}},
                )
                assert added.status_code == 201, added.text

                seeded = await control["inboxops"].post("/_sim/seed", json={"subject": "Disk full"})
                ticket = str(seeded.json()["data"]["id"])
                links: dict[str, str] = {}

                async def fanned_out() -> bool:
                    detail = await detail_of(admin, ticket)
                    if detail is None or len(detail["links"]) != 3:
                        return False
                    links.update({link["system"]: link["external_id"] for link in detail["links"]})
                    return all(links.values()) and await settled(admin)

                await eventually(fanned_out, timeout_s=60, what="the ticket fanned out")
                follow_up_id = links["incidentio"]
                assert "assignee" not in await follow_up(control, follow_up_id)

                async def assign(agent: str) -> None:
                    response = await control["inboxops"].patch(
                        f"/_sim/objects/{ticket}", json={"assignee_id": agent}
                    )
                    assert response.status_code == 200, response.text

                async def assigned_to(user: str) -> bool:
                    found = await follow_up(control, follow_up_id)
                    return bool(found.get("assignee", {}).get("id") == user)

                # ada, from the config: her incident.io user, not her InboxOps agent id
                await assign(ADA_AGENT)
                await eventually(
                    lambda: assigned_to(ADA_USER), timeout_s=30, what="ada on the follow-up"
                )
                detail = await detail_of(admin, ticket)
                assert detail is not None and detail["item"]["assignee"] == "ada@example.com"

                # bo, from the admin API
                await assign(BO_AGENT)
                await eventually(
                    lambda: assigned_to(BO_USER), timeout_s=30, what="bo on the follow-up"
                )

                # carol is in no identity: nothing is written to incident.io
                before = await follow_up(control, follow_up_id)
                puts_before = [
                    r for r in sims["incidentio"].kit.requests if r.method in ("PUT", "POST")
                ]
                await assign(CAROL_AGENT)
                noted: list[dict[str, Any]] = []

                async def reported() -> bool:
                    detail = await detail_of(admin, ticket)
                    assert detail is not None
                    noted[:] = [
                        h
                        for h in detail["history"]
                        if h["kind"] == "unmapped" and h["field"] == "assignee"
                    ]
                    return bool(noted) and await settled(admin)

                await eventually(reported, timeout_s=30, what="the unmapped assignee in history")
                [entry] = noted
                assert entry["system"] == "incidentio"
                assert entry["new_value"] == f"inboxops:{CAROL_AGENT}"
                assert CAROL_AGENT in entry["detail"]
                detail = await detail_of(admin, ticket)
                assert detail is not None
                assert detail["item"]["assignee"] == f"inboxops:{CAROL_AGENT}"
                assert all(link["state"] == "synced" for link in detail["links"])
                # the follow-up is as it was, and no write was sent to incident.io
                assert await follow_up(control, follow_up_id) == before
                puts_after = [
                    r for r in sims["incidentio"].kit.requests if r.method in ("PUT", "POST")
                ]
                assert puts_after == puts_before
                # and the person's choice in InboxOps stands
                (ticket_now,) = [
                    t for t in await sim_objects(control["inboxops"]) if t["id"] == ticket
                ]
                assert ticket_now["assignee_id"] == CAROL_AGENT

                # carol mapped later (an incident.io user of hers, through the API): the
                # item's assignee becomes her email (it stayed inboxops:<agent> for good),
                # and the assignment goes out at once
                made = await control["incidentio"].post(
                    "/_sim/users", json={"name": "Carol", "email": "carol@example.com"}
                )
                carol_user = made.json()["id"]
                mapped = await admin.put(
                    "/identities/carol@example.com",
                    json={"ids": {"inboxops": CAROL_AGENT, "incidentio": carol_user}},
                )
                assert mapped.status_code == 201, mapped.text
                await eventually(
                    lambda: assigned_to(carol_user), timeout_s=30, what="carol on the follow-up"
                )
                detail = await detail_of(admin, ticket)
                assert detail is not None
                assert detail["item"]["assignee"] == "carol@example.com"
                (named,) = [h for h in detail["history"] if h["system"] == "identities"]
                assert named["old_value"] == f"inboxops:{CAROL_AGENT}"
                # InboxOps is not written: its ticket holds carol's agent already
                (ticket_now,) = [
                    t for t in await sim_objects(control["inboxops"]) if t["id"] == ticket
                ]
                assert ticket_now["assignee_id"] == CAROL_AGENT
            finally:
                await gateway.stop()
