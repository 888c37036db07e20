"""What the contract suite needs to drive DevHelm: one status page, incidents seeded as a
person would open them, and platform events as the only webhooks DevHelm sends."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import httpx

from adapters.devhelm.simulator import DevHelmSimulator
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status
from tests.contract.kit import VendorKit

STATUS_PAGE_ID = "5f0c9a1e-3b7d-4c2a-9e61-8d4b2f7a0c35"


class DevHelmKit(VendorKit):
    system: ClassVar[str] = "devhelm"
    api_key: ClassVar[str] = "dh_live_4f9b2c7e1a8d4e6f9c3b5a7d2e1f8c6b"
    webhook_secret: ClassVar[str] = "7c1e9a4b2d6f8e3a5c0b9d7f1e4a6c8b"
    other_secret: ClassVar[str] = "0b3d5f7a9c1e2b4d6f8a0c2e4b6d8f1a"
    signature_headers: ClassVar[tuple[str, ...]] = ("x-devhelm-signature",)
    timestamped: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = (STATUS_PAGE_ID,)
    create_target: ClassVar[CreateTarget | None] = CreateTarget(
        scope=STATUS_PAGE_ID, params={"notify_subscribers": False}
    )
    create_fields: ClassVar[Fields] = Fields(
        title="Elevated checkout latency",
        description="Payments are slower than usual; we are on it.",
        status=Status.ACKNOWLEDGED,
        priority=Priority.HIGH,
    )
    # seed() opens INVESTIGATING incidents (canonical open).
    update_fields: ClassVar[Fields] = Fields(status=Status.MONITORING)

    rate_limit_headers: ClassVar[tuple[str, ...]] = (
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    )

    def api_headers(self) -> dict[str, str]:
        # the organisation header DevHelm's SDK sends, as the adapter does
        return {"Authorization": f"Bearer {self.api_key}", "x-phelm-org-id": "1"}

    def simulator(self, **options: Any) -> DevHelmSimulator:
        sim = DevHelmSimulator(options["options"], webhook_client=options.get("webhook_client"))
        sim.add_status_page(STATUS_PAGE_ID, "Acme status", "AUTOMATIC")
        return sim

    async def seed(self, sim: httpx.AsyncClient, n: int = 0) -> ObjectRef:
        response = await sim.post(
            "/_sim/seed",
            json={
                "statusPageId": STATUS_PAGE_ID,
                "title": f"API errors in eu-west #{n}",
                "impact": "MINOR",
                "body": "We are investigating elevated error rates.",
            },
        )
        assert response.status_code == 201, response.text
        return ObjectRef(self.system, STATUS_PAGE_ID, response.json()["data"]["id"])

    async def human_change(self, sim: httpx.AsyncClient, ref: ObjectRef) -> None:
        response = await sim.patch(
            f"/_sim/objects/{ref.external_id}",
            json={"status": "IDENTIFIED", "body": "The cause is identified; a fix is rolling out."},
        )
        assert response.status_code == 200, response.text

    async def trigger_webhook(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            "/_sim/platform-events",
            json={"type": "incident.resolved", "data": {"id": str(uuid.uuid4())}},
        )
        assert response.status_code == 202, response.text


KIT = DevHelmKit()
