"""Contract-suite knowledge of InboxOps: seeding tickets, a person's edit, webhook trigger."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from adapters.inboxops.simulator import SUPPORT_INBOX_ID, InboxOpsSimulator
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status
from tests.contract.kit import VendorKit


class InboxOpsKit(VendorKit):
    system: ClassVar[str] = "inboxops"
    api_key: ClassVar[str] = "ixk_live_5f2c9e81b7d64a03a1c8e4f0d29b6a7c"
    webhook_secret: ClassVar[str] = "whsec_kJNTpxxxqxZe1m1jX7BCyjOhu+AwdNjayutrtWmd+VQ="
    other_secret: ClassVar[str] = "whsec_J+H4SMlGqsD7i4QWHHW3KlhorYy88OeUW0tV/Grv2Ss="
    signature_headers: ClassVar[tuple[str, ...]] = (
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    )
    timestamped: ClassVar[bool] = True
    create_target: ClassVar[CreateTarget | None] = CreateTarget(
        params={"inbox_id": SUPPORT_INBOX_ID}
    )
    create_fields: ClassVar[Fields] = Fields(
        title="Customer cannot export invoices",
        description="Mirrored from the incident; export job fails with 502.",
        status=Status.ACKNOWLEDGED,
        priority=Priority.HIGH,
    )
    # seed() makes open/normal tickets, so this is always a change.
    update_fields: ClassVar[Fields] = Fields(status=Status.WAITING, priority=Priority.URGENT)

    def simulator(self, **options: Any) -> InboxOpsSimulator:
        return InboxOpsSimulator(options["options"], webhook_client=options.get("webhook_client"))

    async def seed(self, sim: httpx.AsyncClient, n: int = 0) -> ObjectRef:
        response = await sim.post(
            "/_sim/seed", json={"subject": f"Password reset link expired #{n}"}
        )
        assert response.status_code == 201, response.text
        return ObjectRef(self.system, "", response.json()["data"]["id"])

    async def human_change(self, sim: httpx.AsyncClient, ref: ObjectRef) -> None:
        response = await sim.patch(f"/_sim/objects/{ref.external_id}", json={"status": "resolved"})
        assert response.status_code == 200, response.text

    async def trigger_webhook(self, sim: httpx.AsyncClient) -> None:
        await self.seed(sim, 99)


KIT = InboxOpsKit()
