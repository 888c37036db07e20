"""``/admin/identities`` against a served gateway: the key, listing people from both
sources, adding, replacing and deleting one, 4xx problems with reasons for bad input,
404 for an unknown person, and people kept in the database across gateways."""

from __future__ import annotations

import msgspec

from app.config.schema import FieldRule, Identity
from app.gateway import Gateway
from app.store import Store
from tests.admin_support import admin, fan_out, ok, problem
from tests.rig import Rig, secrets

ADA_IO = "6e2c7c5e-0000-4000-8000-00000000000a"
BO_IO = "6e2c7c5e-0000-4000-8000-00000000000b"
ROUTES = [
    ("GET", "/admin/identities"),
    ("GET", "/admin/identities/ada@example.com"),
    ("PUT", "/admin/identities/ada@example.com"),
    ("DELETE", "/admin/identities/ada@example.com"),
]


def with_config_person(rig: Rig) -> None:
    """The config names ada (a reload, as ``POST /admin/config/reload`` makes one)."""
    ada = Identity(
        email="ada@example.com", name="Ada", ids={"inboxops": ADA_IO, "incidentio": "U-ADA"}
    )
    settings = msgspec.structs.replace(rig.gateway.settings, identities=[ada])
    rig.gateway.reload(settings, rig.gateway.secrets)


async def test_identity_routes_require_the_key(store: Store) -> None:
    async with admin(store) as (rig, client):
        for method, path in ROUTES:
            body = {"ids": {"inboxops": BO_IO}} if method == "PUT" else None
            response = await client.request(method, path, json=body, headers={"X-Admin-Key": "no"})
            problem(response, 401, "wrong admin key")
        assert rig.gateway.identities.entries() == []


async def test_add_replace_list_and_delete_people(store: Store) -> None:
    async with admin(store) as (rig, client):
        with_config_person(rig)
        added = await client.put(
            "/admin/identities/Bo@Example.com",
            json={"name": "Bo", "ids": {"inboxops": BO_IO, "incidentio": "U-BO"}},
        )
        assert ok(added, 201) == {
            "email": "bo@example.com",
            "name": "Bo",
            "ids": {"inboxops": BO_IO, "incidentio": "U-BO"},
            "source": "api",
        }
        listing = ok(await client.get("/admin/identities"))["identities"]
        assert [(p["email"], p["source"]) for p in listing] == [
            ("ada@example.com", "config"),
            ("bo@example.com", "api"),
        ]
        # the gateway carries assignees through the new person at once
        assert rig.gateway.rules.identities.canonical("incidentio", "U-BO") == "bo@example.com"

        replaced = await client.put(
            "/admin/identities/bo@example.com", json={"ids": {"incidentio": "U-BO2"}}
        )
        assert ok(replaced)["ids"] == {"incidentio": "U-BO2"}
        assert ok(await client.get("/admin/identities/BO@example.com"))["ids"] == {
            "incidentio": "U-BO2"
        }
        assert rig.gateway.rules.identities.canonical("incidentio", "U-BO") == "incidentio:U-BO"

        # stored: another gateway on the same database reads bo back
        other = Gateway(rig.gateway.settings, secrets(), store, run_pollers=False)
        await other.identities.load()
        assert other.rules.identities.user_id("bo@example.com", "incidentio") == "U-BO2"

        assert (await client.delete("/admin/identities/bo@example.com")).status_code == 204
        problem(
            await client.get("/admin/identities/bo@example.com"),
            404,
            "no identity 'bo@example.com'",
        )
        problem(await client.delete("/admin/identities/bo@example.com"), 404, "no identity")
        assert rig.gateway.rules.identities.user_id("bo@example.com", "incidentio") is msgspec.UNSET


async def test_bad_input_is_refused_with_its_reason(store: Store) -> None:
    async with admin(store) as (rig, client):
        with_config_person(rig)
        url = "/admin/identities/bo@example.com"
        problem(await client.put(url, json={"name": "Bo"}), 400, "ids")
        problem(await client.put(url, json={"ids": {"inboxops": BO_IO}, "team": "x"}), 400, "team")
        problem(await client.put(url, json={"ids": {"inboxops": ""}}), 422, "must not be empty")
        too_long = {"ids": {"inboxops": "x" * 201}}
        problem(await client.put(url, json=too_long), 422, "longer than 200")
        problem(await client.put(url, content=b"{not json"), 400)
        problem(await client.put(url, json={"ids": {}}), 422, "at least one system")
        problem(
            await client.put(url, json={"ids": {"jira": "J-1"}}),
            422,
            "no system named 'jira'",
        )
        problem(
            await client.put(url, json={"ids": {"hookstream": "h-1"}}),
            422,
            "hookstream has no assignees (systems that do: inboxops, incidentio)",
        )
        problem(
            await client.put("/admin/identities/not-an-email", json={"ids": {"inboxops": BO_IO}}),
            422,
            "is not an email address",
        )
        # the config's people are read-only here, and so are their user ids
        problem(
            await client.put(
                "/admin/identities/ada@example.com", json={"ids": {"inboxops": BO_IO}}
            ),
            409,
            "defined in config.yaml",
        )
        problem(await client.delete("/admin/identities/ADA@example.com"), 409, "config.yaml")
        problem(
            await client.put(url, json={"ids": {"inboxops": ADA_IO}}),
            409,
            f"inboxops user '{ADA_IO}' already belongs to ada@example.com",
        )
        # nothing refused was stored
        assert [p.email for p, _ in rig.gateway.identities.entries()] == ["ada@example.com"]
        async with store.tx() as tx:
            assert await tx.list_people() == []


async def test_a_work_item_is_assigned_to_a_person_not_a_raw_id(store: Store) -> None:
    async with admin(store, fields={"assignee": FieldRule()}) as (rig, client):
        with_config_person(rig)
        item_id, _ = await fan_out(rig)
        url = f"/admin/work-items/{item_id}"
        problem(await client.patch(url, json={"assignee": "U-ADA"}), 422, "is no person")
        changed = ok(await client.patch(url, json={"assignee": "ADA@example.com"}))
        assert changed["item"]["assignee"] == "ada@example.com"
