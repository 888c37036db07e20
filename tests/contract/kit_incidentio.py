"""incident.io for the contract suite: follow-ups live in the simulator's pre-made public,
standard incident (``DEFAULT_INCIDENT_ID``); listing is global, so there are no scopes."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import httpx

from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID, IncidentIoSimulator
from app.model import CreateTarget, Fields, ObjectRef, Status
from tests.contract.kit import VendorKit


def _secret(seed: bytes) -> str:
    return "whsec_" + base64.b64encode(seed).decode()


class IncidentIoKit(VendorKit):
    system: ClassVar[str] = "incidentio"
    api_key: ClassVar[str] = "inc_test_5f0c9a2e7b8d4c61a3e9f1b2d7c4a8e0"
    webhook_secret: ClassVar[str] = _secret(b"syncgate-incidentio-contract-secret-one")
    other_secret: ClassVar[str] = _secret(b"syncgate-incidentio-contract-secret-two")
    signature_headers: ClassVar[tuple[str, ...]] = (
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    )
    timestamped: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = ()
    create_target: ClassVar[CreateTarget | None] = CreateTarget(scope=DEFAULT_INCIDENT_ID)
    create_fields: ClassVar[Fields] = Fields(
        title="Add alerting on replica lag",
        description="Page the database on-call when lag exceeds 30s.",
        status=Status.RESOLVED,
    )
    # Seeded follow-ups are outstanding (canonical open), so this is a change.
    update_fields: ClassVar[Fields] = Fields(
        status=Status.CANCELLED, title="Not doing: superseded by the new runbook"
    )

    rate_limit_headers: ClassVar[tuple[str, ...]] = (
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-used",
        "x-ratelimit-reset",
    )

    def simulator(self, **options: Any) -> IncidentIoSimulator:
        return IncidentIoSimulator(options["options"], webhook_client=options.get("webhook_client"))

    async def seed(self, sim: httpx.AsyncClient, n: int = 0) -> ObjectRef:
        response = await sim.post(
            "/_sim/seed",
            json={
                "incident_id": DEFAULT_INCIDENT_ID,
                "title": f"Follow-up {n}: document the failover",
                "description": "Write down what we learned.",
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return ObjectRef(self.system, body["incident_id"], body["id"])

    async def human_change(self, sim: httpx.AsyncClient, ref: ObjectRef) -> None:
        response = await sim.patch(f"/_sim/objects/{ref.external_id}", json={"status": "completed"})
        assert response.status_code == 200, response.text

    async def trigger_webhook(self, sim: httpx.AsyncClient) -> None:
        await self.seed(sim, 99)


KIT = IncidentIoKit()
