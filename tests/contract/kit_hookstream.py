"""What the contract suite needs to know about hookstream: issues are opened by the vendor
(a failure reported through ``/_sim/seed``), changed by a person through ``/_sim/objects``."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import httpx

from adapters.hookstream.simulator import HookstreamSimulator
from app.model import CreateTarget, Fields, ObjectRef, Status
from tests.contract.kit import VendorKit


class HookstreamKit(VendorKit):
    system: ClassVar[str] = "hookstream"
    api_key: ClassVar[str] = "hs_test_" + "5f3a9c1e7b2d4086" * 4
    webhook_secret: ClassVar[str] = "hookstream-channel-secret-one"
    other_secret: ClassVar[str] = "hookstream-channel-secret-two"
    signature_headers: ClassVar[tuple[str, ...]] = (
        "x-hookstream-signature",
        "x-hookstream-timestamp",
    )
    timestamped: ClassVar[bool] = True
    create_target: ClassVar[CreateTarget | None] = None
    create_fields: ClassVar[Fields] = Fields()
    update_fields: ClassVar[Fields] = Fields(status=Status.ACKNOWLEDGED)

    rate_limit_headers: ClassVar[tuple[str, ...]] = (
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    )

    def api_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def signature_headers_under(self, behaviour: dict[str, Any]) -> tuple[str, ...]:
        if self.timestamped_under(behaviour):
            return self.signature_headers
        return ("x-hookstream-signature",)

    def retry_after_under(self, behaviour: dict[str, Any]) -> bool:
        return behaviour.get("retry_after", "sent") == "sent"

    def timestamped_under(self, behaviour: dict[str, Any]) -> bool:
        return behaviour.get("notification_signature", "timestamped") == "timestamped"

    def simulator(self, **options: Any) -> HookstreamSimulator:
        return HookstreamSimulator(options["options"], webhook_client=options.get("webhook_client"))

    @staticmethod
    async def _fail(sim: httpx.AsyncClient, n: int) -> str:
        """Report a failure with a fresh fingerprint, so hookstream opens a new issue."""
        response = await sim.post(
            "/_sim/seed",
            json={
                "destination_id": "dst_" + uuid.uuid4().hex,
                "destination_name": f"orders-webhook-{n}",
                "error_type": "http_5xx",
                "last_error": f"HTTP 503 from orders-webhook-{n}",
                "last_status_code": 503,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["issue"]["id"])

    async def seed(self, sim: httpx.AsyncClient, n: int = 0) -> ObjectRef:
        return ObjectRef(self.system, "", await self._fail(sim, n))

    async def human_change(self, sim: httpx.AsyncClient, ref: ObjectRef) -> None:
        response = await sim.patch(f"/_sim/objects/{ref.external_id}", json={"status": "resolved"})
        assert response.status_code == 200, response.text

    async def trigger_webhook(self, sim: httpx.AsyncClient) -> None:
        await self._fail(sim, 0)


KIT = HookstreamKit()
