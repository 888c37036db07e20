"""How simulators start. With ``SimOptions.seed_config`` they have what a Syncgate config
names: with the shipped config.yaml, a gateway run by hand against ``syncgate simulate``
finds the DevHelm status page it polls, the InboxOps inbox and the incident.io incident it
creates in (checked through each vendor's own API, in process, over an ASGI transport).
A webhook secret that cannot sign is refused at start, or recorded on the delivery when
it is set at runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import simulator_class
from adapters._simbase import config_names, read_seed_config
from adapters._simkit import SimOptions

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config.yaml"
PACKAGED = ROOT / "app" / "defaults" / "config.yaml"
PAGE = "5d1e7c52-1f43-4c6e-9a51-7f3f0d2b9a10"
INBOX = "0b6f5f3e-8a4b-4f7e-9d55-2f0c7f1f2a01"
INCIDENT = "01JDEMOINC0000000000000001"
API_KEY = "sim_test_key_5b1d0c9e"
AUTH = {
    "hookstream": {"X-API-Key": API_KEY},
    "devhelm": {"Authorization": f"Bearer {API_KEY}"},
    "inboxops": {"Authorization": f"Bearer {API_KEY}"},
    "incidentio": {"Authorization": f"Bearer {API_KEY}"},
}


@asynccontextmanager
async def api(vendor: str, seed_config: Path | None) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the vendor API of a fresh simulator (its key sent on every call)."""
    options = SimOptions(
        api_key=API_KEY, seed_config=None if seed_config is None else str(seed_config)
    )
    sim = simulator_class(vendor)(options)
    transport = httpx.ASGITransport(app=sim.app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sim.test", headers=AUTH[vendor]
        ) as client:
            yield client
    finally:
        await sim.kit.close()


@pytest.fixture(params=[SHIPPED, PACKAGED], ids=["config.yaml", "app/defaults/config.yaml"])
def config(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


def test_the_shipped_config_names_what_the_simulators_must_have() -> None:
    data = read_seed_config(SHIPPED)
    assert config_names(data, "devhelm") == [PAGE]
    assert config_names(data, "inboxops", param="inbox_id") == [INBOX]
    assert config_names(data, "incidentio") == [INCIDENT]
    assert config_names(data, "hookstream") == []


async def test_devhelm_has_the_status_page_it_is_polled_on(config: Path) -> None:
    path = f"/api/v1/status-pages/{PAGE}/incidents"
    async with api("devhelm", None) as bare:
        assert (await bare.get(path)).status_code == 404  # what a fresh simulator answers
    async with api("devhelm", config) as client:
        listed = await client.get(path)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == []
        created = await client.post(
            path, json={"title": "Checkout errors", "impact": "MINOR", "body": "Looking."}
        )
        assert created.status_code == 201, created.text
        assert created.json()["data"]["statusPageId"] == PAGE
        pages = (await client.get("/_sim/status-pages")).json()["data"]
        assert [(p["id"], p["incidentMode"]) for p in pages] == [(PAGE, "AUTOMATIC")]


async def test_inboxops_has_the_inbox_tickets_are_created_in(config: Path) -> None:
    body = {"subject": "Orders webhooks failing", "inbox_id": INBOX}
    async with api("inboxops", None) as bare:
        refused = await bare.post("/api/v1/tickets", json=body)
        assert refused.status_code == 400
        assert "unknown inbox" in refused.json()["detail"]
    async with api("inboxops", config) as client:
        created = await client.post("/api/v1/tickets", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["data"]["inbox_id"] == INBOX
        listed = await client.get("/api/v1/tickets", params={"inbox_id": INBOX})
        assert listed.status_code == 200, listed.text
        assert listed.json()["meta"]["total"] == 1
        inboxes = {i["id"] for i in (await client.get("/_sim/inboxes")).json()["data"]}
        assert INBOX in inboxes
        assert len(inboxes) == 3  # the built-in Support and Billing inboxes stay


async def test_incidentio_has_the_incident_follow_ups_are_created_in(config: Path) -> None:
    body = {"incident_id": INCIDENT, "title": "Add a retry budget to order webhooks"}
    async with api("incidentio", None) as bare:
        assert (await bare.post("/v3/follow_ups", json=body)).status_code == 422
    async with api("incidentio", config) as client:
        created = await client.post("/v3/follow_ups", json=body)
        assert created.status_code == 201, created.text
        listed = await client.get("/v3/follow_ups", params={"incident_id": INCIDENT})
        assert listed.status_code == 200, listed.text
        assert [f["id"] for f in listed.json()["follow_ups"]] == [created.json()["follow_up"]["id"]]
        incidents = (await client.get("/_sim/incidents")).json()["incidents"]
        seeded = next(i for i in incidents if i["id"] == INCIDENT)
        assert (seeded["mode"], seeded["visibility"]) == ("standard", "public")


async def test_hookstream_starts_with_the_option_and_nothing_to_make(config: Path) -> None:
    async with api("hookstream", config) as client:
        listed = await client.get("/v1/issues", params={"status": "all"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["issues"] == []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_names_come_from_scopes_and_every_create_rule_once_each(tmp_path: Path) -> None:
    other_page = "7a0f3c1e-2b4d-4e6f-8a9c-0d1e2f3a4b5c"
    path = write(
        tmp_path,
        f"""
systems:
  devhelm: {{enabled: false, scopes: ["{PAGE}"]}}
  incidentio: {{scopes: ["INC_A"]}}
create_rules:
  - name: one
    system: hookstream
    create_in:
      - {{system: devhelm, scope: "{other_page}"}}
      - {{system: inboxops, params: {{inbox_id: "{INBOX}"}}}}
      - {{system: incidentio, scope: "INC_B"}}
  - name: two
    system: hookstream
    create_in:
      - {{system: devhelm, scope: "{PAGE}"}}
      - {{system: incidentio, scope: "INC_A"}}
""",
    )
    data = read_seed_config(path)
    assert config_names(data, "devhelm") == [PAGE, other_page]
    assert config_names(data, "incidentio") == ["INC_A", "INC_B"]
    assert config_names(data, "inboxops", param="inbox_id") == [INBOX]
    assert config_names(data, "inboxops") == []


@pytest.mark.parametrize(
    ("vendor", "text", "message"),
    [
        ("devhelm", "systems: {devhelm: {scopes: [not-a-uuid]}}", "is not a UUID"),
        (
            "inboxops",
            "create_rules: [{create_in: [{system: inboxops, params: {inbox_id: nope}}]}]",
            "is not a UUID",
        ),
        ("incidentio", "systems: {incidentio: {scopes: [42]}}", "expected an id"),
        ("hookstream", "[systems, create_rules]", "expected a mapping"),
        ("devhelm", "systems: {devhelm: [", "cannot read it"),
    ],
)
def test_a_bad_seed_config_is_refused_at_start(
    tmp_path: Path, vendor: str, text: str, message: str
) -> None:
    options = SimOptions(api_key=API_KEY, seed_config=str(write(tmp_path, text)))
    with pytest.raises(ValueError, match=message):
        simulator_class(vendor)(options)


@pytest.mark.parametrize("vendor", ["hookstream", "devhelm", "inboxops", "incidentio"])
def test_a_missing_seed_config_is_refused_at_start(tmp_path: Path, vendor: str) -> None:
    options: Any = SimOptions(api_key=API_KEY, seed_config=str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match=r"absent\.yaml: cannot read it"):
        simulator_class(vendor)(options)


@pytest.mark.parametrize("vendor", ["inboxops", "incidentio"])
@pytest.mark.parametrize("secret", ["not base64 !", "whsec_"])
def test_a_standard_webhooks_secret_that_cannot_sign_is_refused_at_start(
    vendor: str, secret: str
) -> None:
    options = SimOptions(api_key=API_KEY, webhook_secret=secret)
    with pytest.raises(ValueError, match=r"Standard Webhooks secret \(whsec_<base64>\)"):
        simulator_class(vendor)(options)


async def test_a_secret_set_at_runtime_that_cannot_sign_is_recorded_on_the_delivery() -> None:
    async with api("incidentio", None) as client:
        target = {"url": "http://gateway.test/webhooks/incidentio", "secret": "not base64 !"}
        assert (await client.put("/_sim/webhook", json=target)).status_code == 200
        seeded = await client.post(
            "/_sim/seed", json={"incident_id": "01HQ0000000000000000000001", "title": "x"}
        )
        assert seeded.status_code == 201, seeded.text
        await client.post("/_sim/webhooks/flush")
        (delivery,) = (await client.get("/_sim/webhooks")).json()["deliveries"]
    assert delivery["error"].startswith("cannot sign: ")
    assert (delivery["attempts"], delivery["gave_up"], delivery["delivered"]) == (1, True, False)


@pytest.mark.parametrize("vendor", ["hookstream", "devhelm", "inboxops", "incidentio"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_sim/faults", b'{"bogus": 1}'),
        ("POST", "/_sim/faults", b'{"chance": 0}'),
        ("POST", "/_sim/faults", b'{"chance": 1.5}'),
        ("PUT", "/_sim/latency", b'{"ms": "slow"}'),
        ("PUT", "/_sim/webhook", b"not json"),
        ("PUT", "/_sim/behaviour", b"[1]"),
    ],
)
async def test_a_control_body_that_does_not_fit_is_a_400(
    vendor: str, method: str, path: str, body: bytes
) -> None:
    async with api(vendor, None) as client:
        response = await client.request(method, path, content=body)
    assert response.status_code == 400, response.text


async def test_a_fault_with_a_chance_fails_about_that_share_of_calls_spread_over_them() -> None:
    """400 calls against a fault of 1,000 at a chance of one in four: about 100 fail
    (the binomial's standard deviation is 8.7, so the bounds are 4.6 of them away), and
    they are spread over the calls, not the first ones in a row."""
    async with api("hookstream", None) as client:
        fault = {"status": 503, "count": 1000, "chance": 0.25, "methods": ["GET"]}
        assert (await client.post("/_sim/faults", json=fault)).status_code == 201
        statuses = [(await client.get("/v1/issues")).status_code for _ in range(400)]
    assert set(statuses) == {200, 503}
    failed = statuses.count(503)
    assert 60 <= failed <= 140, failed
    assert 0 < statuses[:200].count(503) < failed, "the failures come in one block"
