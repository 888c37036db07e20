"""One vendor on loopback for the adapter and contract tests: the vendor's simulator served
over HTTP, an adapter pointed at it, and clients for its API and its ``/_sim/`` control
surface. The rig is the same for every vendor; what differs (the simulator, the key and
how it is sent, the secrets) is the vendor's kit (``tests/contract/kit_<vendor>.py``).

Webhooks the simulator sends are captured instead of delivered; the receiver answers with
``hook_answers`` in turn (a status, or an exception to raise: the receiver is down), then
204. The whole-installation rig (four simulators and a gateway) is ``tests/rig.py``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from adapters import adapter_class
from adapters.base import Adapter
from app.outbound import PooledTransport, VendorClient
from app.serving import serve_asgi
from tests.contract.kit import VendorKit
from tests.contract.kits import KITS

#: The methods that write, for ``writes``.
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class VendorRig:
    def __init__(
        self,
        kit: VendorKit,
        sim: Any,
        url: str,
        *,
        control: httpx.AsyncClient,
        api: httpx.AsyncClient,
        client: httpx.AsyncClient,
        behaviour: dict[str, Any],
    ) -> None:
        self.kit = kit
        self.sim = sim
        #: The simulator's base URL.
        self.url = url
        #: The simulator without credentials: its ``/_sim/`` control surface.
        self.control = control
        #: The simulator with the vendor's credentials, sent the vendor's way.
        self.api = api
        #: The HTTP client the adapters use.
        self.client = client
        self.behaviour = behaviour
        self.adapter: Any = self.adapter_with()
        #: Webhook deliveries the simulator sent, in order.
        self.captured: list[httpx.Request] = []
        #: What the webhook receiver answers next: a status, or an exception to raise.
        self.hook_answers: list[int | Exception] = []

    def adapter_with(self, **overrides: Any) -> Any:
        """A fresh adapter for this vendor, with adapter settings changed by ``overrides``."""
        base_url = overrides.pop("base_url", self.url)
        adapter: Adapter = adapter_class(self.kit.system)(
            self.kit.settings(base_url, **overrides), self.client
        )
        return adapter

    def answer_webhook(self, request: httpx.Request) -> httpx.Response:
        self.captured.append(request)
        answer = self.hook_answers.pop(0) if self.hook_answers else 204
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    # -- the simulator's control surface ---------------------------------------------------

    async def fault(self, **fault: Any) -> None:
        response = await self.control.post("/_sim/faults", json=fault)
        assert response.status_code == 201, response.text

    async def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """The simulator's request log, only ``method``'s requests if given."""
        log = (await self.control.get("/_sim/requests")).json()["requests"]
        return [r for r in log if method is None or r["method"] == method]

    async def writes(self) -> list[dict[str, Any]]:
        """The writes the vendor accepted (2xx answers)."""
        return [
            r
            for r in await self.requests()
            if r["method"] in WRITE_METHODS and 200 <= r["status"] < 300
        ]

    async def deliveries(self) -> list[httpx.Request]:
        """Every webhook the simulator sent, once it has sent all that are due."""
        await self.control.post("/_sim/webhooks/flush")
        return self.captured

    async def delivered_bodies(self) -> list[dict[str, Any]]:
        """The decoded bodies of ``deliveries``."""
        return [msgspec.json.decode(r.content) for r in await self.deliveries()]

    async def webhook_log(self) -> list[dict[str, Any]]:
        """The simulator's own record of its webhook deliveries (``/_sim/webhooks``)."""
        await self.control.post("/_sim/webhooks/flush")
        return list((await self.control.get("/_sim/webhooks")).json()["deliveries"])


@contextlib.asynccontextmanager
async def serve_vendor(
    system: str, behaviour: dict[str, Any] | None = None, *, client_timeout: float = 5.0
) -> AsyncIterator[VendorRig]:
    """``system``'s simulator, playing ``behaviour``, served on loopback, and its rig; the
    adapters' client times out after ``client_timeout`` seconds."""
    kit = KITS[system]
    behaviour = dict(behaviour or {})
    rig_box: list[VendorRig] = []

    def capture(request: httpx.Request) -> httpx.Response:
        return rig_box[0].answer_webhook(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as hooks:
        sim = kit.simulator(
            options=kit.sim_options(
                webhook_url=f"http://gateway.test/webhooks/{system}", behaviour=behaviour
            ),
            webhook_client=hooks,
        )
        async with (
            serve_asgi(sim.app) as url,
            # the client the gateway gives every adapter (app.gateway.http_client)
            VendorClient(timeout=client_timeout, transport=PooledTransport()) as client,
            httpx.AsyncClient(base_url=url, timeout=10.0) as control,
            httpx.AsyncClient(base_url=url, timeout=10.0, headers=kit.api_headers()) as api,
        ):
            rig = VendorRig(
                kit, sim, url, control=control, api=api, client=client, behaviour=behaviour
            )
            rig_box.append(rig)
            yield rig
