"""What the admin API tests share: a served gateway with its admin client, problem and
answer checks, a fanned-out work item, injected faults."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.model import ObjectRef
from app.store import Store
from tests.contract.kits import KITS
from tests.rig import SYSTEMS, Rig, running_rig

KEY = "admin-test-key"


PROBLEM = "application/problem+json"


@contextlib.asynccontextmanager
async def admin(store: Store, **kwargs: Any) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    async with (
        running_rig(store, serve_gateway=True, **kwargs) as rig,
        httpx.AsyncClient(
            base_url=rig.gateway_url, headers={"X-Admin-Key": KEY}, timeout=10.0
        ) as client,
    ):
        yield rig, client


def problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """Assert ``response`` is a problem with ``status`` whose detail mentions ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    for word in words:
        assert word in body["detail"], body
    return body  # type: ignore[no-any-return]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def fan_out(rig: Rig, n: int = 0) -> tuple[str, dict[str, dict[str, Any]]]:
    """A hookstream issue fanned out to every system; the item id and its links by system."""
    issue = await rig.open_issue(n)
    await rig.settle()
    async with rig.gateway.store.tx() as tx:
        link = await tx.link_for(ObjectRef("hookstream", "", issue))
    assert link is not None
    item_id = link.work_item_id
    links = await rig.links(item_id)
    assert set(links) == set(SYSTEMS)
    return item_id, {
        s: {"id": link.id, "external_id": link.external_id} for s, link in links.items()
    }


async def fault(rig: Rig, system: str, **spec: Any) -> None:
    response = await rig.control[system].post("/_sim/faults", json=spec)
    assert response.status_code == 201, response.text


def set_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for system in SYSTEMS:
        monkeypatch.setenv(f"SYNCGATE_{system.upper()}_API_KEY", KITS[system].api_key)
        monkeypatch.setenv(f"SYNCGATE_{system.upper()}_WEBHOOK_SECRET", KITS[system].webhook_secret)
    monkeypatch.setenv("SYNCGATE_ADMIN_KEY", KEY)
