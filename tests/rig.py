"""A whole installation for tests: the four simulators on loopback, and a gateway wired to
them whose loops the test drives step by step (poll, process inbox, dispatch), so that
every test is deterministic and waits on work being done, never on time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from adapters._simkit import SimOptions
from adapters.inboxops.simulator import SUPPORT_INBOX_ID
from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID
from app.config import ResolvedSecrets, SystemSecrets
from app.config.schema import (
    Conflict,
    CreateIn,
    CreateRule,
    DispatcherSettings,
    FieldRule,
    Settings,
    SystemSettings,
    ValueMapSettings,
)
from app.gateway import Gateway
from app.http.app import create_app
from app.serving import bind_socket, serve_asgi
from app.store import Store
from tests.contract.kit import WEBHOOK_TIME_SCALE
from tests.contract.kits import KITS

SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")
STATUS_PAGE_ID = "5d1e7c52-1f43-4c6e-9a51-7f3f0d2b9a10"

FAN_OUT = CreateRule(
    name="hookstream-issue-fans-out",
    system="hookstream",
    create_in=[
        CreateIn(system="devhelm", scope=STATUS_PAGE_ID, params={"notify_subscribers": False}),
        CreateIn(system="inboxops", params={"inbox_id": SUPPORT_INBOX_ID}),
        CreateIn(system="incidentio", scope=DEFAULT_INCIDENT_ID),
    ],
)

DEFAULT_FIELDS = {
    "title": FieldRule(owner="hookstream"),
    "description": FieldRule(owner="hookstream"),
    "status": FieldRule(conflict=Conflict(policy="last_writer")),
}


def build_settings(
    urls: dict[str, str],
    *,
    fields: dict[str, FieldRule] | None = None,
    create_rules: Sequence[CreateRule] = (FAN_OUT,),
    status_maps: dict[str, ValueMapSettings] | None = None,
    dispatcher: DispatcherSettings | None = None,
    poll_interval_s: float = 0.0,
) -> Settings:
    systems = {
        name: SystemSettings(
            base_url=urls[name],
            api_key_env=f"SYNCGATE_{name.upper()}_API_KEY",
            webhook_secret_envs=[f"SYNCGATE_{name.upper()}_WEBHOOK_SECRET"],
            poll_interval_s=poll_interval_s,
            poll_overlap_s=5.0,
            scopes=[STATUS_PAGE_ID] if name == "devhelm" else [],
            status_map=(status_maps or {}).get(name),
            timeout_s=2.0,
        )
        for name in SYSTEMS
    }
    return Settings(
        systems=systems,
        create_rules=list(create_rules),
        fields=DEFAULT_FIELDS if fields is None else fields,
        dispatcher=dispatcher
        or DispatcherSettings(max_attempts=4, backoff_base_s=0.05, backoff_max_s=0.2, lease_s=10),
    )


def secrets() -> ResolvedSecrets:
    return ResolvedSecrets(
        systems={
            name: SystemSecrets(
                api_key=KITS[name].api_key, webhook_secrets=(KITS[name].webhook_secret,)
            )
            for name in SYSTEMS
        },
        admin_key="admin-test-key",
    )


def make_simulators(
    webhook_url: str | None = None,
    webhook_clients: dict[str, httpx.AsyncClient] | None = None,
) -> dict[str, Any]:
    """The four simulators; ``webhook_clients`` gives a vendor's sender its own HTTP client
    (a flaky network between the vendor and the gateway)."""
    sims = {}
    for name in SYSTEMS:
        kit = KITS[name]
        sims[name] = kit.simulator(
            webhook_client=(webhook_clients or {}).get(name),
            options=SimOptions(
                webhook_time_scale=WEBHOOK_TIME_SCALE,
                api_key=kit.api_key,
                webhook_url=None if webhook_url is None else f"{webhook_url}/webhooks/{name}",
                webhook_secret=kit.webhook_secret,
            ),
        )
    sims["devhelm"].add_status_page(STATUS_PAGE_ID, "Acme status", "MANUAL")
    return sims


class Rig:
    def __init__(
        self, sims: dict[str, Any], control: dict[str, httpx.AsyncClient], gateway: Gateway
    ) -> None:
        self.sims = sims
        self.control = control
        self.gateway = gateway
        self.gateway_url = ""

    # -- driving the gateway ---------------------------------------------------------------

    async def poll(self, *systems: str) -> None:
        for system in systems or SYSTEMS:
            result = await self.gateway.pollers.poll(system)
            assert result.error is None, result.error

    async def settle(self, *, poll: bool = True, rounds: int = 10) -> None:
        """Run polls, the inbox and the dispatcher until nothing is left to do now."""
        for _ in range(rounds):
            await self.flush_webhooks()
            await self.gateway.worker.run_until_idle()
            if poll:
                await self.poll()
            await self.gateway.dispatcher.run_until_idle()
            await self.flush_webhooks()
            async with self.gateway.store.tx() as tx:
                depth = sum((await tx.queue_depth()).values())
                pending = await tx.pending_events()
            if depth == 0 and pending == 0 and await self._quiet():
                return
        raise AssertionError("the gateway did not settle")

    async def _quiet(self) -> bool:
        """True when another poll changes nothing (all echoes absorbed)."""
        before = await self.write_counts()
        await self.poll()
        await self.gateway.dispatcher.run_until_idle()
        return await self.write_counts() == before

    async def flush_webhooks(self) -> None:
        for sim in self.sims.values():
            await sim.kit.flush()

    # -- looking at the vendors ------------------------------------------------------------

    async def write_counts(self) -> dict[str, int]:
        return {name: len(sim.kit.writes()) for name, sim in self.sims.items()}

    async def writes_since(self, before: dict[str, int]) -> dict[str, int]:
        """Writes each vendor received since ``before`` (a ``write_counts`` result)."""
        after = await self.write_counts()
        return {name: after[name] - before[name] for name in after}

    async def objects(self, system: str) -> list[dict[str, Any]]:
        response = await self.control[system].get("/_sim/objects")
        assert response.status_code == 200, response.text
        return list(response.json()["objects"])

    async def object(self, system: str, external_id: str) -> dict[str, Any]:
        for obj in await self.objects(system):
            if obj["id"] == external_id:
                return obj
        raise AssertionError(f"{system} has no object {external_id}")

    async def human(self, system: str, external_id: str, **changes: Any) -> None:
        """A person changes an object in the vendor's own UI."""
        response = await self.control[system].patch(f"/_sim/objects/{external_id}", json=changes)
        assert response.status_code == 200, response.text

    async def links(self, item_id: str) -> dict[str, Any]:
        async with self.gateway.store.tx() as tx:
            return {link.system: link for link in await tx.links_of(item_id)}

    async def only_item(self) -> Any:
        async with self.gateway.store.tx() as tx:
            items, total = await tx.search_items()
        assert total == 1, f"expected one work item, found {total}"
        return items[0]

    async def open_issue(self, n: int = 0) -> str:
        ref = await KITS["hookstream"].seed(self.control["hookstream"], n)
        return ref.external_id


@contextlib.asynccontextmanager
async def running_rig(
    store: Store,
    *,
    serve_gateway: bool = False,
    webhooks: bool = False,
    webhook_clients: dict[str, httpx.AsyncClient] | None = None,
    **settings_kwargs: Any,
) -> AsyncIterator[Rig]:
    """The simulators served on loopback and a gateway on ``store``; with
    ``serve_gateway`` the gateway's HTTP app is served too (``rig.gateway_url``) and, with
    ``webhooks``, the simulators send their webhooks to it."""
    async with contextlib.AsyncExitStack() as stack:
        gateway_url = ""
        sock = None
        if serve_gateway:
            # bind the gateway first so the simulators know where to send webhooks
            sock = bind_socket()
            gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        sims = make_simulators(gateway_url if webhooks else None, webhook_clients)
        urls = {}
        control = {}
        for name, sim in sims.items():
            urls[name] = await stack.enter_async_context(serve_asgi(sim.app))
            control[name] = await stack.enter_async_context(
                httpx.AsyncClient(base_url=urls[name], timeout=10.0)
            )
        settings = build_settings(urls, **settings_kwargs)
        gateway = Gateway(settings, secrets(), store, run_pollers=False)
        # connected before the test makes anything: what it makes is new, not history
        await gateway.connect()
        rig = Rig(sims, control, gateway)
        if serve_gateway:
            app = create_app(gateway, manage_lifecycle=False)
            rig.gateway_url = await stack.enter_async_context(serve_asgi(app, sock=sock))
        try:
            yield rig
        finally:
            await gateway.pollers.close()  # polls a hint started (run_pollers=False)
            await gateway.stop()


async def linked(rig: Rig) -> tuple[str, dict[str, str]]:
    """Open a hookstream issue and let it fan out; returns the item id and the external id
    of each linked object."""
    await rig.open_issue()
    await rig.settle()
    item = await rig.only_item()
    links = await rig.links(item.id)
    assert set(links) == {"hookstream", "devhelm", "inboxops", "incidentio"}
    ids = {system: link.external_id for system, link in links.items()}
    assert all(ids.values()), ids
    return item.id, ids


#: What ``statuses`` shows when the four objects all mean resolved, or all mean open.
ALL_RESOLVED = {
    "hookstream": "resolved",
    "devhelm": "RESOLVED",
    "inboxops": "resolved",
    "incidentio": "completed",
}


ALL_OPEN = {
    "hookstream": "open",
    "devhelm": "INVESTIGATING",
    "inboxops": "open",
    "incidentio": "outstanding",
}


async def statuses(rig: Rig, ids: dict[str, str]) -> dict[str, Any]:
    return {system: (await rig.object(system, ext))["status"] for system, ext in ids.items()}
