"""The /admin API against a served gateway and the four simulators, on SQLite and
PostgreSQL: authentication, 4xx problems with reasons, and effects seen through the API
and in the vendors' own records."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from app.model import ObjectRef
from app.store import Store
from tests.admin_support import KEY, admin, fan_out, fault, ok, problem, set_environment
from tests.contract.kits import KITS
from tests.rig import ALL_RESOLVED, STATUS_PAGE_ID, SYSTEMS, Rig

# every admin route, with a harmless target (unknown ids are fine: auth comes first)
ROUTES = [
    ("GET", "/admin/work-items"),
    ("POST", "/admin/work-items"),
    ("GET", "/admin/work-items/x"),
    ("PATCH", "/admin/work-items/x"),
    ("POST", "/admin/work-items/x/links"),
    ("POST", "/admin/work-items/x/resync"),
    ("GET", "/admin/lookup?system=hookstream&external_id=1"),
    ("DELETE", "/admin/links/1"),
    ("POST", "/admin/links/1/relink"),
    ("POST", "/admin/links/1/resync"),
    ("GET", "/admin/outbox"),
    ("POST", "/admin/outbox/1/retry"),
    ("POST", "/admin/outbox/1/discard"),
    ("POST", "/admin/outbox/retry-dead"),
    ("POST", "/admin/outbox/discard-dead"),
    ("GET", "/admin/events"),
    ("GET", "/admin/events/rejected"),
    ("POST", "/admin/events/1/retry"),
    ("GET", "/admin/systems"),
    ("POST", "/admin/systems/hookstream/pause"),
    ("POST", "/admin/systems/hookstream/resume"),
    ("GET", "/admin/config"),
    ("POST", "/admin/config/reload"),
]


async def statuses(rig: Rig, links: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {s: (await rig.object(s, link["external_id"]))["status"] for s, link in links.items()}


# -- authentication ---------------------------------------------------------------------------


async def test_every_admin_route_requires_the_key(store: Store) -> None:
    async with admin(store) as (rig, client):
        for method, path in ROUTES:
            bare = await client.request(method, path, headers={"X-Admin-Key": ""})
            problem(bare, 401, "admin key required")
            assert "bearer" in bare.headers["www-authenticate"].lower()
            wrong = await client.request(method, path, headers={"X-Admin-Key": KEY + "x"})
            problem(wrong, 401, "wrong admin key")
            wrong_bearer = await client.request(
                method, path, headers={"X-Admin-Key": "", "Authorization": "Bearer nope"}
            )
            problem(wrong_bearer, 401, "wrong admin key")
        # a refused request changed nothing
        async with rig.gateway.store.tx() as tx:
            assert (await tx.system_state("hookstream")).paused is False
        # the key works in either header
        bearer = await client.get(
            "/admin/systems", headers={"X-Admin-Key": "", "Authorization": f"Bearer {KEY}"}
        )
        assert ok(bearer)["systems"]
        assert ok(await client.get("/admin/systems"))["systems"]
        # health, readiness and metrics stay open
        assert (await client.get("/healthz", headers={"X-Admin-Key": ""})).status_code == 200


async def test_without_a_configured_key_the_admin_api_is_closed(store: Store) -> None:
    async with admin(store) as (rig, client):
        rig.gateway.secrets = msgspec.structs.replace(rig.gateway.secrets, admin_key=None)
        for method, path in ROUTES:
            response = await client.request(method, path)
            body = problem(response, 401)
            assert body["detail"] == "admin API is closed: set SYNCGATE_ADMIN_KEY"


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_the_openapi_document_describes_the_admin_api(store: Store) -> None:
    async with admin(store) as (_, client):
        doc = ok(await client.get("/schema/openapi.json"))
    paths = doc["paths"]
    for method, path in ROUTES:
        template = (
            path.split("?")[0]
            .replace("/work-items/x", "/work-items/{item_id}")
            .replace("/links/1", "/links/{link_id}")
            .replace("/outbox/1", "/outbox/{link_id}")
            .replace("/events/1", "/events/{event_id}")
            .replace("/systems/hookstream", "/systems/{name}")
        )
        operation = paths[template][method.lower()]
        assert operation["summary"], (method, template)
    schemas = doc["components"]["schemas"]
    for name in (
        "WorkItemDetail",
        "LinkOut",
        "OutboxEntry",
        "EventOut",
        "SystemStatus",
        "CreateWorkItemIn",
        "ChangeWorkItemIn",
        "Problem",
    ):
        assert any(key.endswith(name) for key in schemas), name
    create = paths["/admin/work-items"]["post"]
    assert "409" in create["responses"] and "401" in create["responses"]
    assert {"AdminKey": []} in create["security"]
    assert set(doc["components"]["securitySchemes"]) == {"AdminKey", "AdminBearer"}


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_unknown_paths_and_methods_answer_problem_json(store: Store) -> None:
    async with admin(store) as (_, client):
        missing = await client.get("/admin/nothing-here")
        wrong = await client.delete("/healthz")
    assert missing.status_code == 404 and wrong.status_code == 405
    for response in (missing, wrong):
        assert response.headers["content-type"].startswith("application/problem+json")


# -- work items: list, search, detail, lookup ------------------------------------------------


async def test_list_search_and_page_work_items(store: Store) -> None:
    async with admin(store) as (rig, client):
        first, _ = await fan_out(rig, 0)
        second, _ = await fan_out(rig, 1)
        await client.patch(f"/admin/work-items/{second}", json={"status": "resolved"})

        page = ok(await client.get("/admin/work-items"))
        assert page["total"] == 2 and {i["id"] for i in page["items"]} == {first, second}
        page = ok(await client.get("/admin/work-items", params={"limit": 1, "offset": 1}))
        assert page["total"] == 2 and len(page["items"]) == 1
        assert (page["limit"], page["offset"]) == (1, 1)
        page = ok(await client.get("/admin/work-items", params={"status": "resolved"}))
        assert [i["id"] for i in page["items"]] == [second]
        title = page["items"][0]["title"]
        page = ok(await client.get("/admin/work-items", params={"text": title.upper()}))
        assert [i["id"] for i in page["items"]] == [second]
        page = ok(await client.get("/admin/work-items", params={"system": "devhelm"}))
        assert page["total"] == 2

        problem(await client.get("/admin/work-items", params={"status": "bogus"}), 400, "status")
        problem(await client.get("/admin/work-items", params={"limit": 0}), 400, "limit")
        problem(await client.get("/admin/work-items", params={"limit": 501}), 400, "limit")
        problem(await client.get("/admin/work-items", params={"offset": -1}), 400, "offset")
        problem(await client.get("/admin/work-items", params={"limit": "many"}), 400, "limit")
        problem(await client.get("/admin/work-items", params={"system": "jira"}), 422, "jira")
        for text in ("a\x00b", "a\x00"):  # the index's path and the scan's
            problem(await client.get("/admin/work-items", params={"text": text}), 400, "NUL")


async def test_one_work_item_and_lookup_by_vendor_id(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        detail = ok(await client.get(f"/admin/work-items/{item_id}"))
        assert detail["item"]["id"] == item_id
        assert {link["system"] for link in detail["links"]} == set(SYSTEMS)
        assert all(link["state"] == "synced" for link in detail["links"])
        kinds = [h["kind"] for h in detail["history"]]
        assert kinds[0] == "created" and kinds.count("write") >= 3
        assert detail["pending_writes"] == []

        found = ok(
            await client.get(
                "/admin/lookup",
                params={
                    "system": "hookstream",
                    "external_id": links["hookstream"]["external_id"],
                },
            )
        )
        assert found["item"]["id"] == item_id
        found = ok(
            await client.get(
                "/admin/lookup",
                params={
                    "system": "devhelm",
                    "external_id": links["devhelm"]["external_id"],
                    "scope": STATUS_PAGE_ID,
                },
            )
        )
        assert found["item"]["id"] == item_id

        problem(await client.get("/admin/work-items/nope"), 404, "nope")
        problem(
            await client.get(
                "/admin/lookup",
                params={
                    "system": "devhelm",
                    "external_id": links["devhelm"]["external_id"],
                    "scope": "another-page",
                },
            ),
            404,
        )
        problem(
            await client.get(
                "/admin/lookup",
                params={
                    "system": "hookstream",
                    "external_id": "missing",
                },
            ),
            404,
            "missing",
        )
        problem(
            await client.get("/admin/lookup", params={"system": "hookstream"}), 400, "external_id"
        )
        problem(
            await client.get(
                "/admin/lookup",
                params={
                    "system": "jira",
                    "external_id": "1",
                },
            ),
            422,
            "jira",
        )


# -- work items: change, create, link ---------------------------------------------------------


async def test_patching_a_work_item_propagates_to_every_vendor(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        result = ok(
            await client.patch(
                f"/admin/work-items/{item_id}", json={"status": "resolved", "priority": "high"}
            )
        )
        assert sorted(result["changed"]) == ["priority", "status"]
        assert result["item"]["status"] == "resolved" and result["dirty_links"]
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, links) == ALL_RESOLVED
        history = ok(await client.get(f"/admin/work-items/{item_id}"))["history"]
        assert {"field": "status", "system": "admin", "new_value": "resolved"}.items() <= next(
            h for h in history if h["kind"] == "change" and h["field"] == "status"
        ).items()
        # the same values again change nothing
        again = ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        assert again["changed"] == [] and again["dirty_links"] == []

        url = f"/admin/work-items/{item_id}"
        problem(await client.patch(url, json={"status": "done"}), 400, "status")
        problem(await client.patch(url, json={"colour": "red"}), 400, "colour")
        problem(await client.patch(url, json={"title": ""}), 400, "title")
        problem(await client.patch(url, content=b"{not json"), 400)
        problem(await client.patch(url, json={}), 422, "nothing")
        problem(await client.patch("/admin/work-items/nope", json={"status": "open"}), 404, "nope")


async def test_create_a_work_item_linking_existing_objects(store: Store) -> None:
    async with admin(store, create_rules=[]) as (rig, client):
        ticket = (await KITS["inboxops"].seed(rig.control["inboxops"], 7)).external_id
        follow_up = await KITS["incidentio"].seed(rig.control["incidentio"], 7)
        body = {
            "title": "Checkout webhooks failing",
            "status": "acknowledged",
            "links": [
                {"system": "inboxops", "external_id": ticket},
                {
                    "system": "incidentio",
                    "scope": follow_up.scope,
                    "external_id": follow_up.external_id,
                },
            ],
        }
        detail = ok(await client.post("/admin/work-items", json=body), 201)
        item_id = detail["item"]["id"]
        assert detail["item"]["status"] == "acknowledged"
        assert {link["system"] for link in detail["links"]} == {"inboxops", "incidentio"}
        assert {w["system"] for w in detail["pending_writes"]} == {"inboxops", "incidentio"}
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "in_progress"
        assert (await rig.object("inboxops", ticket))["subject"] == "Checkout webhooks failing"
        detail = ok(await client.get(f"/admin/work-items/{item_id}"))
        assert detail["pending_writes"] == []
        assert [h["kind"] for h in detail["history"]][:3] == ["created", "linked", "linked"]

        # an object linked elsewhere is refused, naming the item that holds it
        again = {"title": "dup", "links": [{"system": "inboxops", "external_id": ticket}]}
        problem(await client.post("/admin/work-items", json=again), 409, item_id)
        # a vendor object that does not exist: 404, and nothing is created
        missing = {"title": "x", "links": [{"system": "inboxops", "external_id": "tkt_missing"}]}
        problem(await client.post("/admin/work-items", json=missing), 404, "tkt_missing")
        # the vendor failing: 502 with its reason
        await fault(rig, "inboxops", status=503, count=1, methods=["GET"])
        other = (await KITS["inboxops"].seed(rig.control["inboxops"], 8)).external_id
        failing = {"title": "x", "links": [{"system": "inboxops", "external_id": other}]}
        problem(await client.post("/admin/work-items", json=failing), 502, "inboxops")
        assert ok(await client.get("/admin/work-items"))["total"] == 1

        problem(await client.post("/admin/work-items", json={"links": []}), 400, "title")
        problem(await client.post("/admin/work-items", json={"title": "x", "status": "new"}), 400)
        problem(
            await client.post("/admin/work-items", json={"title": "x", "owner": "me"}), 400, "owner"
        )
        unknown = {"title": "x", "links": [{"system": "jira", "external_id": "1"}]}
        problem(await client.post("/admin/work-items", json=unknown), 422, "jira")
        twice = {"title": "x", "links": [{"system": "inboxops", "external_id": other}] * 2}
        problem(await client.post("/admin/work-items", json=twice), 422, "twice")
        assert ok(await client.get("/admin/work-items"))["total"] == 1


async def test_link_relink_and_unlink(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        created = ok(await client.post("/admin/work-items", json={"title": "Other"}), 201)
        other = created["item"]["id"]
        ticket = (await KITS["inboxops"].seed(rig.control["inboxops"], 3)).external_id

        link = ok(
            await client.post(
                f"/admin/work-items/{other}/links",
                json={"system": "inboxops", "external_id": ticket},
            ),
            201,
        )
        assert link["work_item_id"] == other and link["external_id"] == ticket
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["subject"] == "Other"

        problem(
            await client.post(
                f"/admin/work-items/{item_id}/links",
                json={"system": "inboxops", "external_id": ticket},
            ),
            409,
            other,
        )
        problem(
            await client.post(
                "/admin/work-items/nope/links", json={"system": "inboxops", "external_id": ticket}
            ),
            404,
            "nope",
        )
        problem(
            await client.post(
                f"/admin/work-items/{other}/links",
                json={"system": "inboxops", "external_id": "tkt_x"},
            ),
            404,
            "tkt_x",
        )
        problem(
            await client.post(f"/admin/work-items/{other}/links", json={"system": "inboxops"}),
            400,
            "external_id",
        )

        # a write to the ticket for "Other" dies (a 422 there)
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{other}", json={"title": "Other, renamed"}))
        await rig.gateway.dispatcher.run_until_idle()
        dead = ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"]
        assert [e["link_id"] for e in dead] == [link["id"]]

        # relink the ticket to the first item: it then holds that item's state (the dead
        # write was the other item's: it goes with the move)
        moved = ok(
            await client.post(f"/admin/links/{link['id']}/relink", json={"work_item_id": item_id})
        )
        assert moved["work_item_id"] == item_id
        relinked = ok(await client.get(f"/admin/work-items/{item_id}"))["links"]
        assert [x["state"] for x in relinked if x["id"] == link["id"]] == ["pending"]
        await rig.gateway.dispatcher.run_until_idle()
        assert ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"] == []
        title = ok(await client.get(f"/admin/work-items/{item_id}"))["item"]["title"]
        assert (await rig.object("inboxops", ticket))["subject"] == title
        assert len(ok(await client.get(f"/admin/work-items/{item_id}"))["links"]) == 5
        assert ok(await client.get(f"/admin/work-items/{other}"))["links"] == []
        problem(
            await client.post(f"/admin/links/{link['id']}/relink", json={"work_item_id": "nope"}),
            404,
            "nope",
        )
        problem(
            await client.post(f"/admin/links/{link['id']}/relink", json={}), 400, "work_item_id"
        )
        problem(
            await client.post("/admin/links/999999/relink", json={"work_item_id": item_id}),
            404,
            "999999",
        )

        # unlink
        assert (await client.delete(f"/admin/links/{link['id']}")).status_code == 204
        assert len(ok(await client.get(f"/admin/work-items/{item_id}"))["links"]) == 4
        problem(await client.delete(f"/admin/links/{link['id']}"), 404)
        problem(await client.delete("/admin/links/abc"), 400, "abc")
        history = ok(await client.get(f"/admin/work-items/{item_id}"))["history"]
        assert {"linked", "unlinked"} <= {h["kind"] for h in history}


async def test_resync_an_item_or_one_link(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        # a person resolves the ticket; no poll, no webhook: the gateway does not know yet
        await rig.human("inboxops", links["inboxops"]["external_id"], status="resolved")
        result = ok(await client.post(f"/admin/work-items/{item_id}/resync"))
        outcomes = {entry["system"]: entry["outcome"] for entry in result["links"]}
        assert outcomes == {
            "hookstream": "unchanged",
            "devhelm": "unchanged",
            "inboxops": "changed",
            "incidentio": "unchanged",
        }
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, links) == ALL_RESOLVED
        # a person changes the incident; resync just that link
        await rig.human("devhelm", links["devhelm"]["external_id"], status="INVESTIGATING")
        result = ok(await client.post(f"/admin/links/{links['devhelm']['id']}/resync"))
        assert [e["outcome"] for e in result["links"]] == ["changed"]
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", links["inboxops"]["external_id"]))["status"] == "open"

        problem(await client.post("/admin/work-items/nope/resync"), 404, "nope")
        problem(await client.post("/admin/links/424242/resync"), 404, "424242")
        problem(await client.post("/admin/links/-1/resync"), 400)


# -- outbox -----------------------------------------------------------------------------------


async def test_dead_letter_is_listed_and_a_retry_sends_it(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        ticket = links["inboxops"]["external_id"]
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "open"

        dead = ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"]
        assert [(e["system"], e["link_id"], e["state"]) for e in dead] == [
            ("inboxops", links["inboxops"]["id"], "dead")
        ]
        assert (
            "422" in dead[0]["dead_reason"] and dead[0]["recent_attempts"][-1]["outcome"] == "dead"
        )
        systems = {s["name"]: s for s in ok(await client.get("/admin/systems"))["systems"]}
        assert systems["inboxops"]["dead_letters"] == 1 and systems["inboxops"]["last_write_error"]
        detail = ok(await client.get(f"/admin/work-items/{item_id}"))
        assert [w["state"] for w in detail["pending_writes"]] == ["dead"]

        entry = ok(await client.post(f"/admin/outbox/{links['inboxops']['id']}/retry"))
        assert entry["state"] == "pending"
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "resolved"
        assert ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"] == []

        problem(
            await client.post(f"/admin/outbox/{links['inboxops']['id']}/retry"),
            409,
            "no pending write",
        )
        problem(await client.post(f"/admin/outbox/{links['inboxops']['id']}/discard"), 409)
        problem(await client.post("/admin/outbox/777777/retry"), 404, "777777")
        problem(await client.post("/admin/outbox/x1/discard"), 400, "x1")
        problem(await client.get("/admin/outbox", params={"state": "stuck"}), 400, "state")


async def test_discard_and_bulk_retry_of_dead_letters(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        ticket = links["inboxops"]["external_id"]
        # one dead letter, discarded: the write never goes out
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        discarded = ok(await client.post(f"/admin/outbox/{links['inboxops']['id']}/discard"))
        assert discarded["state"] == "synced"
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "open"
        assert ok(await client.post("/admin/outbox/discard-dead"))["count"] == 0

        # two dead letters (inboxops and devhelm), retried in bulk
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        await fault(rig, "devhelm", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "acknowledged"}))
        await rig.gateway.dispatcher.run_until_idle()
        dead = ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"]
        assert sorted(e["system"] for e in dead) == ["devhelm", "inboxops"]
        only = {"state": "dead", "system": "devhelm"}
        dead = ok(await client.get("/admin/outbox", params=only))["entries"]
        assert [e["system"] for e in dead] == ["devhelm"]
        problem(
            await client.post("/admin/outbox/retry-dead", params={"system": "nope"}), 422, "nope"
        )
        retried = await client.post("/admin/outbox/retry-dead", params={"system": "devhelm"})
        assert ok(retried)["count"] == 1  # devhelm's only
        dead = ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"]
        assert [e["system"] for e in dead] == ["inboxops"]
        assert ok(await client.post("/admin/outbox/retry-dead"))["count"] == 1
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "in_progress"
        assert (await rig.object("devhelm", links["devhelm"]["external_id"]))[
            "status"
        ] == "IDENTIFIED"

        # another, discarded in bulk
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "open"}))
        await rig.gateway.dispatcher.run_until_idle()
        other = await client.post("/admin/outbox/discard-dead", params={"system": "devhelm"})
        assert ok(other)["count"] == 0  # not devhelm's
        # a misspelt filter is refused, not read as no filter (which would discard all)
        typo = await client.post("/admin/outbox/discard-dead", params={"sytem": "devhelm"})
        problem(typo, 400, "unknown query parameter: sytem", "takes: system")
        problem(await client.get("/admin/outbox", params={"stat": "dead"}), 400, "stat")
        assert len(ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"]) == 1
        assert ok(await client.post("/admin/outbox/discard-dead"))["count"] == 1
        assert ok(await client.get("/admin/outbox", params={"state": "dead"}))["entries"] == []
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "in_progress"


async def test_a_dead_create_retried_sends_the_item_as_it_is_now(store: Store) -> None:
    """The body of a create is kept from its first attempt (a retry after a lost answer
    must send the same one). A create the vendor refused stayed dead for good: every
    retry sent the refused body again, whatever the operator fixed on the item."""
    async with admin(store) as (rig, client):
        await fault(rig, "devhelm", status=422, count=1, methods=["POST"])
        issue = await rig.open_issue()
        await rig.settle()
        async with rig.gateway.store.tx() as tx:
            link = await tx.link_for(ObjectRef("hookstream", "", issue))
        assert link is not None
        item_id = link.work_item_id
        created = (await rig.links(item_id))["devhelm"]
        assert created.dead and created.external_id is None

        ok(await client.patch(f"/admin/work-items/{item_id}", json={"title": "Fixed title"}))
        ok(await client.post(f"/admin/outbox/{created.id}/retry"))
        await rig.gateway.dispatcher.run_until_idle()
        posts = [r for r in rig.sims["devhelm"].kit.requests if r.method == "POST"]
        assert [r.status for r in posts][-1] == 201
        assert posts[-1].body["title"] == "Fixed title"
        assert not (await rig.links(item_id))["devhelm"].dead


async def test_failed_write_retry_now_and_pending_discard(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        ticket = links["inboxops"]["external_id"]
        await fault(rig, "inboxops", status=503, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        failed = ok(await client.get("/admin/outbox", params={"state": "failed"}))["entries"]
        assert [(e["system"], e["attempts"]) for e in failed] == [("inboxops", 1)]
        assert failed[0]["next_attempt_at"] is not None
        # the backoff has not passed: retry makes it due now
        ok(await client.post(f"/admin/outbox/{failed[0]['link_id']}/retry"))
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "resolved"

        # a pending write, discarded while its system is paused, never goes out
        ok(await client.post("/admin/systems/inboxops/pause"))
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "open"}))
        await rig.gateway.dispatcher.run_until_idle()
        pending = ok(await client.get("/admin/outbox"))["entries"]
        assert [e["system"] for e in pending] == ["inboxops"]
        ok(await client.post(f"/admin/outbox/{pending[0]['link_id']}/discard"))
        assert ok(await client.get("/admin/outbox"))["entries"] == []
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "resolved"
        # resuming polls the system to catch up; that poll finds the ticket out of step
        # with the item, and the sync writes the item's current state after all
        ok(await client.post("/admin/systems/inboxops/resume"))
        await asyncio.gather(*rig.gateway.pollers.pending_requests())
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "open"
        assert ok(await client.get("/admin/outbox"))["entries"] == []


# -- systems ----------------------------------------------------------------------------------


async def test_pause_holds_a_systems_writes_and_resume_sends_them(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        paused = ok(await client.post("/admin/systems/devhelm/pause"))
        assert paused["paused"] is True
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        assert await statuses(rig, links) == {
            "hookstream": "resolved",
            "devhelm": "INVESTIGATING",
            "inboxops": "resolved",
            "incidentio": "completed",
        }
        overview = ok(await client.get("/admin/systems"))
        systems = {s["name"]: s for s in overview["systems"]}
        assert systems["devhelm"]["paused"] and systems["devhelm"]["queue_depth"] == 1
        assert not systems["inboxops"]["paused"] and overview["queue_depth"] == 1
        assert systems["hookstream"]["last_poll_at"] is not None
        assert systems["hookstream"]["lag_s"] >= 0
        # a poll of a paused system is skipped
        assert (await rig.gateway.pollers.poll("devhelm")).error == "paused"

        resumed = ok(await client.post("/admin/systems/devhelm/resume"))
        assert resumed["paused"] is False
        # resuming also polls the system to catch up: let that poll finish first
        await asyncio.gather(*rig.gateway.pollers.pending_requests())
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("devhelm", links["devhelm"]["external_id"]))[
            "status"
        ] == "RESOLVED"
        assert ok(await client.get("/admin/systems"))["queue_depth"] == 0

        problem(await client.post("/admin/systems/jira/pause"), 404, "jira")
        problem(await client.post("/admin/systems/jira/resume"), 404, "jira")


# -- events -----------------------------------------------------------------------------------


async def test_event_log_lists_webhooks_and_polls_with_outcomes(store: Store) -> None:
    async with admin(store, webhooks=True) as (rig, client):
        await fan_out(rig)
        polls = ok(await client.get("/admin/events", params={"source": "poll"}))["events"]
        assert polls and all(e["source"] == "poll" and e["state"] == "done" for e in polls)
        assert isinstance(polls[0]["body"], dict) and "objects" in polls[0]["body"]
        hooks = ok(await client.get("/admin/events", params={"source": "webhook"}))["events"]
        assert hooks and all(e["state"] == "done" and e["outcome"] for e in hooks)
        assert isinstance(hooks[0]["body"], dict)
        for event in hooks:
            assert not any(
                "signature" in h or h in ("authorization", "x-api-key") for h in event["headers"]
            )
        text = (await client.get("/admin/events", params={"limit": 500})).text
        for system in SYSTEMS:
            assert KITS[system].api_key not in text
            assert KITS[system].webhook_secret not in text

        inbox = ok(
            await client.get("/admin/events", params={"system": "inboxops", "source": "webhook"})
        )
        assert inbox["events"] and {e["system"] for e in inbox["events"]} == {"inboxops"}
        one = ok(await client.get("/admin/events", params={"limit": 1, "offset": 1}))
        assert len(one["events"]) == 1
        assert ok(await client.get("/admin/events", params={"state": "failed"}))["events"] == []

        problem(await client.get("/admin/events", params={"state": "weird"}), 400, "state")
        problem(await client.get("/admin/events", params={"source": "email"}), 400, "source")
        problem(await client.get("/admin/events", params={"system": "jira"}), 422, "jira")
        problem(await client.get("/admin/events", params={"limit": 10_000}), 400, "limit")


# -- config -----------------------------------------------------------------------------------


def write_config(rig: Rig, path: Path, **dispatcher: Any) -> None:
    data = msgspec.to_builtins(rig.gateway.settings)
    data["dispatcher"].update(dispatcher)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


async def test_config_view_masks_and_reload_refuses_an_invalid_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin(store) as (rig, client):
        view = ok(await client.get("/admin/config"))
        assert view["path"] is None
        assert set(view["config"]["systems"]) == set(SYSTEMS)
        for system in SYSTEMS:
            assert KITS[system].api_key not in str(view)
        problem(await client.post("/admin/config/reload"), 409, "config file")

        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "dispatcher:\n  max_attempts: lots\nsystems:\n  hookstream:\n    base_url: x\n"
            "    colour: red\n",
            encoding="utf-8",
        )
        rig.gateway.config_path = str(bad)
        body = problem(
            await client.post("/admin/config/reload"), 422, "running configuration stays"
        )
        issues = body["issues"]
        assert len(issues) >= 3
        assert all(set(i) == {"file", "line", "key", "message"} for i in issues)
        assert {
            "dispatcher.max_attempts",
            "systems.hookstream.colour",
            "systems.hookstream.api_key_env",
        } <= {i["key"] for i in issues}
        assert next(i for i in issues if i["key"] == "dispatcher.max_attempts")["line"] == 2
        assert ok(await client.get("/admin/config"))["config"] == view["config"]

        # a file emptied by mistake would stop every system: refused, as serve refuses it
        empty = tmp_path / "empty.yaml"
        empty.write_text("", encoding="utf-8")
        rig.gateway.config_path = str(empty)
        body = problem(await client.post("/admin/config/reload"), 422)
        assert [i["key"] for i in body["issues"]] == ["systems"]
        assert ok(await client.get("/admin/config"))["config"] == view["config"]

        # a valid file whose secrets are missing from the environment is refused too
        good = tmp_path / "good.yaml"
        write_config(rig, good, max_attempts=2)
        rig.gateway.config_path = str(good)
        body = problem(await client.post("/admin/config/reload"), 422)
        assert any("SYNCGATE_HOOKSTREAM_API_KEY" in i["message"] for i in body["issues"])
        assert ok(await client.get("/admin/config"))["config"]["dispatcher"]["max_attempts"] == 4


async def test_a_valid_config_reload_is_applied(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        good = tmp_path / "config.yaml"
        write_config(rig, good, max_attempts=2)
        set_environment(monkeypatch)
        rig.gateway.config_path = str(good)
        result = ok(await client.post("/admin/config/reload"))
        assert result == {
            "reloaded": True,
            "path": str(good),
            "systems": sorted(SYSTEMS),
            "restart_needed": [],
        }
        view = ok(await client.get("/admin/config"))
        assert view["path"] == str(good) and view["config"]["dispatcher"]["max_attempts"] == 2
        assert rig.gateway.dispatcher.settings.max_attempts == 2
        # the reloaded gateway still syncs
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("devhelm", links["devhelm"]["external_id"]))[
            "status"
        ] == "RESOLVED"


async def test_a_reload_disabling_a_system_stops_its_polls_and_holds_its_writes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system disabled by a reload: its poll loop (started with the gateway) crashed
    with a KeyError traceback at every interval; it skips the poll now. A change of a
    linked item waits in its queue (it was not marked) and goes out once it is enabled
    again, as does a write the reload caught between its claim and its call."""
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        path = tmp_path / "config.yaml"
        write_config(rig, path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["systems"]["devhelm"]["enabled"] = False
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        set_environment(monkeypatch)
        rig.gateway.config_path = str(path)
        ok(await client.post("/admin/config/reload"))
        assert (await rig.gateway.pollers.poll("devhelm")).error == "disabled"

        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        incident = links["devhelm"]["external_id"]
        assert (await rig.object("devhelm", incident))["status"] == "INVESTIGATING"
        systems = {s["name"]: s for s in ok(await client.get("/admin/systems"))["systems"]}
        assert systems["devhelm"]["queue_depth"] == 1 and systems["devhelm"]["dead_letters"] == 0

        # a write claimed before the reload disabled its system waits, uncounted
        dispatcher = rig.gateway.dispatcher
        async with rig.gateway.store.tx() as tx:
            (link,) = [x for x in await tx.links_of(item_id) if x.system == "devhelm"]
        attempt = await dispatcher._attempt(link, None)
        assert attempt.held and attempt.error is None

        # a delivery stored (and acknowledged) before the reload waits too: it failed as
        # "system 'devhelm' is not configured", never to be applied
        async with rig.gateway.store.tx() as tx:
            event_id = await tx.record_event(
                system="devhelm",
                delivery_id="before-the-reload",
                source="webhook",
                event_type="incident.updated",
                body=b"{}",
                now=rig.gateway.clock(),
            )
        assert event_id is not None
        await rig.gateway.worker.run_until_idle()
        async with rig.gateway.store.tx() as tx:
            event = await tx.get_event(event_id)
        assert event is not None and (event.state, event.outcome) == ("pending", None)

        data["systems"]["devhelm"]["enabled"] = True
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        ok(await client.post("/admin/config/reload"))
        await dispatcher.run_until_idle()
        assert (await rig.object("devhelm", incident))["status"] == "RESOLVED"
        assert ok(await client.get("/admin/systems"))["dead_letters"] == 0
        await rig.gateway.worker.run_until_idle()
        async with rig.gateway.store.tx() as tx:
            event = await tx.get_event(event_id)
        # read by DevHelm's adapter now (this body is no DevHelm event)
        assert event is not None and event.state == "failed", event
        assert event.outcome is not None and event.outcome.startswith("unreadable"), event


async def test_a_reload_to_keep_history_forever_prunes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``history.retention_days: 0`` keeps everything; set by a reload on a gateway that
    started with a retention, the hourly prune still ran and took it as a retention of
    no time at all: every history entry, write attempt and finished event was deleted."""
    async with admin(store) as (rig, client):
        item_id, _links = await fan_out(rig)
        before = ok(await client.get(f"/admin/work-items/{item_id}"))["history"]
        assert before
        path = tmp_path / "config.yaml"
        write_config(rig, path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["history"] = {"retention_days": 0}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        set_environment(monkeypatch)
        rig.gateway.config_path = str(path)
        ok(await client.post("/admin/config/reload"))
        assert await rig.gateway.prune() == 0
        assert ok(await client.get(f"/admin/work-items/{item_id}"))["history"] == before


async def test_a_reload_that_would_close_the_admin_api_is_refused(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload of a file whose admin.api_key_env names an unset variable (a typo) was
    applied: the admin API closed (401 'admin API is closed') and could not be reloaded
    back, the console with it, until a restart. It is refused, at the key's line."""
    async with admin(store) as (rig, client):
        path = tmp_path / "config.yaml"
        write_config(rig, path)
        text = path.read_text(encoding="utf-8")
        assert "api_key_env: SYNCGATE_ADMIN_KEY" in text
        path.write_text(text.replace("SYNCGATE_ADMIN_KEY", "SYNCGATE_ADMN_KEY"), encoding="utf-8")
        set_environment(monkeypatch)
        rig.gateway.config_path = str(path)
        body = problem(await client.post("/admin/config/reload"), 422)
        (issue,) = body["issues"]
        lines = path.read_text(encoding="utf-8").splitlines()
        assert issue["key"] == "admin.api_key_env"
        assert "SYNCGATE_ADMN_KEY" in lines[issue["line"] - 1]
        assert "would close the admin API" in issue["message"]
        assert ok(await client.get("/admin/systems"))  # still open
        # a rotation to another variable that is set goes through
        monkeypatch.setenv("SYNCGATE_ADMN_KEY", "a-new-admin-key-0123456789")
        ok(await client.post("/admin/config/reload"))
        assert (await client.get("/admin/systems")).status_code == 401
        headers = {"X-Admin-Key": "a-new-admin-key-0123456789"}
        assert (await client.get("/admin/systems", headers=headers)).status_code == 200


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_after_traffic(store: Store) -> None:
    async with admin(store) as (rig, client):
        await fan_out(rig)
        text = (await client.get("/metrics", headers={"X-Admin-Key": ""})).text
    for name in (
        "syncgate_writes_total",
        "syncgate_polls_total",
        "syncgate_observations_total",
        "syncgate_write_seconds_bucket",
        "syncgate_queue_depth",
        "syncgate_poll_lag_seconds",
    ):
        assert name in text, name
    assert 'syncgate_writes_total{action="create",outcome="ok",system="devhelm"} 1.0' in text


async def test_refused_webhooks_are_listed_with_their_reason(store: Store) -> None:
    async with admin(store) as (rig, client):
        assert ok(await client.get("/admin/events/rejected")) == {"rejections": []}
        unsigned = await client.post("/webhooks/inboxops", content=b'{"type": "x"}')
        assert unsigned.status_code == 401
        assert (await client.post("/webhooks/nosuch", content=b"{}")).status_code == 404
        listed = ok(await client.get("/admin/events/rejected"))["rejections"]
        assert [(r["system"], r["status"]) for r in listed] == [
            ("nosuch", 404),
            ("inboxops", 401),
        ]
        assert "nosuch" in listed[0]["reason"] and listed[1]["reason"]
        async with rig.gateway.store.tx() as tx:
            assert await tx.list_events() == []  # nothing was stored


async def test_a_removed_systems_dead_letters_can_still_be_listed_and_discarded(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removed from the config, a system's writes still pending are dead-lettered when
    claimed ("not configured"); filtering the outbox by its name answered 422 "Unknown
    system", so they could only be discarded one by one or with every other system's.
    A misspelt name is still refused."""
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        path = tmp_path / "config.yaml"
        write_config(rig, path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        del data["systems"]["devhelm"]
        data["create_rules"] = []
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        set_environment(monkeypatch)
        rig.gateway.config_path = str(path)
        ok(await client.post("/admin/config/reload"))
        async with rig.gateway.store.tx() as tx:
            (link,) = [x for x in await tx.links_of(item_id) if x.system == "devhelm"]
            await tx.dead_letter(link, "system 'devhelm' is not configured")
        for filtered in ("/admin/outbox", "/admin/events"):
            params = {"system": "devhelm", "state": "dead"} if filtered == "/admin/outbox" else {}
            ok(await client.get(filtered, params=params or {"system": "devhelm"}))
        dead = ok(await client.get("/admin/outbox", params={"state": "dead", "system": "devhelm"}))
        assert [e["link_id"] for e in dead["entries"]] == [links["devhelm"]["id"]]
        discarded = await client.post("/admin/outbox/discard-dead", params={"system": "devhelm"})
        assert ok(discarded) == {"count": 1}
        problem(await client.get("/admin/outbox", params={"system": "devhlm"}), 422, "devhlm")
