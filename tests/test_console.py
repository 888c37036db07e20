"""The console over HTTP, without a browser: sign-in, the session cookie, CSRF on every
form, each page and each action calling the same services as the admin API. The browser
suite (tests/console/) drives the same pages in Chromium against real processes."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy as sa

from app import tables
from app.model import ObjectRef, utcnow
from app.store import HistoryEntry, NewEvent, Store
from tests.admin_support import KEY, fan_out, fault, ok
from tests.rig import Rig, running_rig

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


@contextlib.asynccontextmanager
async def console(store: Store) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    async with (
        running_rig(store, serve_gateway=True) as rig,
        httpx.AsyncClient(base_url=f"{rig.gateway_url}/ui", timeout=10.0) as client,
    ):
        yield rig, client


def token(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str = KEY) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200
    return await client.post(
        "/login", data={"key": key, "_csrf_token": token(form), "next": "/ui/systems"}
    )


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, data: dict[str, str] | None = None
) -> httpx.Response:
    """Post a form of ``page`` as the browser would: with the page's CSRF token."""
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text[:500]
    return await client.post(action, data={"_csrf_token": token(shown), **(data or {})})


async def follow(client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
    """The page a 303 leads to (its location is an absolute path)."""
    assert answer.status_code == 303, answer.text[:500]
    return await client.get(client.base_url.join(answer.headers["location"]))


def flash(page: httpx.Response) -> str:
    found = re.search(r'id="flash">([^<]*)<', page.text)
    return found.group(1) if found else ""


async def test_sign_in_sets_a_strict_httponly_session_and_sign_out_ends_it(
    store: Store,
) -> None:
    async with console(store) as (_, client):
        page = await client.get("/items")
        assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
        partial = await client.get("/items?fragment=live", headers={"HX-Request": "true"})
        assert partial.status_code == 401 and partial.headers["hx-redirect"] == "/ui/login"

        answer = await sign_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/systems"
        cookie = next(
            h for h in answer.headers.get_list("set-cookie") if h.startswith("syncgate_session=")
        )
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/ui" in cookie
        assert "Secure" not in cookie  # served over plain http here
        assert KEY not in cookie
        assert (await client.get("/items")).status_code == 200

        out = await post_form(client, "/items", "/logout")
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert (await client.get("/items")).status_code == 303
        # a form posted once the session is gone leads back to its page after sign-in
        login = await client.get("/login")
        late = await client.post(
            "/systems/devhelm/pause",
            data={"_csrf_token": token(login)},
            headers={"Referer": str(client.base_url.join("/ui/systems?x=1"))},
        )
        assert late.status_code == 303
        assert late.headers["location"] == "/ui/login?next=%2Fui%2Fsystems%3Fx%3D1"


async def test_every_page_answers_head_as_it_answers_get(store: Store) -> None:
    """Monitors and link checkers probe with HEAD: the status GET would get, no body."""
    async with console(store) as (_, client):
        login = await client.head("/login")
        assert (login.status_code, login.content) == (200, b"")
        assert login.headers["content-type"].startswith("text/html")
        signed_out = await client.head("/items")
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/ui/login?next=%2Fui%2Fitems"
        await sign_in(client)
        for page in ("/items", "/outbox", "/systems", "/events", "/onboarding"):
            answer = await client.head(page)
            assert (answer.status_code, answer.content) == (200, b""), page
        assert (await client.head("/items/no-such-item")).status_code == 404


async def test_a_wrong_key_and_a_forged_session_are_refused(store: Store) -> None:
    async with console(store) as (_, client):
        answer = await sign_in(client, "not-the-key")
        assert answer.status_code == 401 and "Wrong admin key" in answer.text
        assert "syncgate_session" not in answer.headers.get("set-cookie", "")
        client.cookies.set("syncgate_session", "9999999999.nonce.forged", path="/ui")
        assert (await client.get("/items")).status_code == 303


async def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    store: Store,
) -> None:
    async with console(store) as (rig, client):
        assert (await sign_in(client)).status_code == 303
        await client.get("/systems")  # the CSRF cookie is set
        refused = await client.post("/systems/devhelm/pause", data={})
        assert refused.status_code == 403 and "CSRF" in refused.text
        forged = await client.post("/systems/devhelm/pause", data={"_csrf_token": "x" * 80})
        assert forged.status_code == 403
        async with rig.gateway.store.tx() as tx:
            assert not (await tx.system_state("devhelm")).paused
        # htmx sends the token in a header (hx-headers on the page's body)
        page = await client.get("/systems")
        header = re.search(r'"x-csrftoken": "([^"]+)"', page.text)
        assert header and header.group(1) == token(page)
        by_htmx = await client.post(
            "/systems/devhelm/pause", headers={"X-CSRFToken": header.group(1), "HX-Request": "true"}
        )
        assert by_htmx.status_code == 303
        async with rig.gateway.store.tx() as tx:
            assert (await tx.system_state("devhelm")).paused
        # the login form is protected too
        client.cookies.clear()
        assert (await client.post("/login", data={"key": KEY})).status_code == 403


async def test_pages_show_an_item_its_objects_and_an_action_goes_through_the_engine(
    store: Store,
) -> None:
    async with console(store) as (rig, client):
        item_id, links = await fan_out(rig)
        assert (await sign_in(client)).status_code == 303
        listing = await client.get("/items", params={"status": "open"})
        assert item_id in listing.text
        for system, link in links.items():
            assert f'data-system="{system}"' in listing.text
            assert str(link["external_id"]) in (await client.get(f"/items/{item_id}")).text
        assert item_id not in (await client.get("/items", params={"status": "resolved"})).text
        live = await client.get("/items", params={"status": "open", "fragment": "live"})
        assert live.text.startswith('<section id="live"') and item_id in live.text
        assert "status=open" in live.text  # the refresh keeps the filter

        done = await post_form(
            client, f"/items/{item_id}", f"/items/{item_id}/change", {"status": "resolved"}
        )
        assert done.status_code == 303 and done.headers["location"] == f"/ui/items/{item_id}"
        shown = await follow(client, done)
        assert flash(shown).startswith("Changed status"), flash(shown)
        await rig.settle()
        for system, link in links.items():
            obj = await rig.object(system, link["external_id"])
            assert obj["status"] in ("resolved", "RESOLVED", "closed", "completed"), (system, obj)

        same = await post_form(
            client, f"/items/{item_id}", f"/items/{item_id}/change", {"status": "resolved"}
        )
        assert flash(await follow(client, same)).startswith("Nothing changed")
        refused = await post_form(
            client, f"/items/{item_id}", f"/items/{item_id}/change", {"status": "bogus"}
        )
        assert "Change refused" in flash(await follow(client, refused))
        # the timeline shows both sides of a lost conflict
        async with rig.gateway.store.tx() as tx:
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=item_id,
                        kind="conflict_lost",
                        field="status",
                        old_value="resolved",
                        new_value="monitoring",
                        system="devhelm",
                        at=utcnow(),
                    )
                ]
            )
        timeline = (await client.get(f"/items/{item_id}")).text
        assert re.search(
            r"conflict lost.*by devhelm.*kept resolved.*lost monitoring", timeline, re.S
        )
        missing = await client.get("/items/nope")
        assert missing.status_code == 404 and "no work item" in missing.text


def notice(page: httpx.Response) -> str:
    found = re.search(r'<p class="flash error" role="alert">([^<]*)<', page.text)
    return found.group(1) if found else ""


async def test_the_work_items_list_says_what_it_could_not_use(store: Store) -> None:
    async with console(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        assert (await sign_in(client)).status_code == 303
        for q in ("a\x00b", "a\x00"):  # the index's path and the scan's
            listing = await client.get("/items", params={"q": q})
            assert listing.status_code == 200, listing.text[:500]
            assert notice(listing).endswith(
                "NUL character (\\x00), which cannot be searched for: not searched"
            ), notice(listing)
            assert item_id in listing.text  # the list, not searched
        for after, said in (
            ("nonsense", "after: 'nonsense' is not <time>~<item id>: the newest page shown"),
            ("0001-01-01T00:00:00+05:00~x", "is out of range"),
        ):
            listing = await client.get("/items", params={"after": after})
            assert listing.status_code == 200 and said in html.unescape(notice(listing))
            assert item_id in listing.text  # the newest page


async def test_the_outbox_and_the_events_say_what_they_could_not_use(store: Store) -> None:
    """A bad page number, or a filter value that is not one of the list's, is named in a
    notice, and the first page, unfiltered, is shown (as the work items' list does)."""
    async with console(store) as (_, client):
        assert (await sign_in(client)).status_code == 303
        for page in ("/outbox", "/events"):
            for number in ("-1", "abc", "0", "\u00b9", "9" * 5000, "100000"):
                shown = await client.get(page, params={"page": number})
                assert shown.status_code == 200, (page, number, shown.text[:300])
                assert "is not a page number (1-99999): the first page shown" in notice(shown)
            assert notice(await client.get(page, params={"page": "2"})) == ""
            assert notice(await client.get(page)) == ""
            shown = await client.get(page, params={"system": "jira", "state": "lost"})
            said = html.unescape(notice(shown))
            assert "unknown system 'jira': not filtered" in said, said
            assert "unknown state 'lost': not filtered" in said, said


async def test_the_change_form_refuses_what_the_admin_api_refuses(store: Store) -> None:
    """A title the API refuses was taken by the console and queued a write per vendor that
    DevHelm then dead-lettered; the form now reads its values by the API body's rules."""
    async with console(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        assert (await sign_in(client)).status_code == 303
        api = httpx.AsyncClient(base_url=rig.gateway_url, headers={"X-Admin-Key": KEY})
        async with api:
            long_title = {"title": "T" * 5000}
            refused = await api.patch(f"/admin/work-items/{item_id}", json=long_title)
            assert refused.status_code == 400 and "title" in refused.text, refused.text
        for form, rule in (
            (long_title, "title: Expected `str` of length <= "),
            ({"status": "bogus"}, "status: Invalid enum value 'bogus'"),
            ({"priority": "meh"}, "priority: Invalid enum value 'meh'"),
        ):
            answer = await post_form(client, f"/items/{item_id}", f"/items/{item_id}/change", form)
            said = html.unescape(flash(await follow(client, answer)))
            assert said.startswith("Change refused: Invalid request (422): "), said
            assert rule in said, said
        async with rig.gateway.store.tx() as tx:
            assert (await tx.require_item(item_id)).title != long_title["title"]
        assert not [link for link in (await rig.links(item_id)).values() if link.dirty]

        done = await post_form(
            client, f"/items/{item_id}", f"/items/{item_id}/change", {"title": "T" * 400}
        )
        assert flash(await follow(client, done)).startswith("Changed title"), done.text


async def test_outbox_retries_a_dead_write_and_bulk_actions_show_a_preview(store: Store) -> None:
    async with console(store) as (rig, client):
        item_id, links = await fan_out(rig)
        ticket = links["inboxops"]["external_id"]
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        async with httpx.AsyncClient(
            base_url=f"{rig.gateway_url}/admin", headers={"X-Admin-Key": KEY}
        ) as admin:
            ok(await admin.patch(f"/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()
        assert (await sign_in(client)).status_code == 303

        dead = await client.get("/outbox", params={"state": "dead", "system": "inboxops"})
        assert f'data-write="{links["inboxops"]["id"]}"' in dead.text and "422" in dead.text
        other = await client.get("/outbox", params={"state": "dead", "system": "devhelm"})
        assert "data-write=" not in other.text

        preview = await client.get("/outbox/bulk", params={"action": "retry", "system": "inboxops"})
        assert "1 dead write to inboxops will be retried" in preview.text
        done = await post_form(
            client,
            "/outbox/bulk?action=retry&system=inboxops",
            "/outbox/bulk",
            {"action": "retry", "system": "inboxops"},
        )
        assert "Retrying 1 dead write" in flash(await follow(client, done))
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["status"] == "resolved"


async def test_systems_pause_and_resume_and_events_list(store: Store) -> None:
    async with console(store) as (rig, client):
        await fan_out(rig)
        assert (await sign_in(client)).status_code == 303
        paused = await post_form(client, "/systems", "/systems/devhelm/pause")
        assert "devhelm paused" in flash(await follow(client, paused))
        async with rig.gateway.store.tx() as tx:
            assert (await tx.system_state("devhelm")).paused
        page = await client.get("/systems?fragment=live")
        assert re.search(r'data-system="devhelm">.*?paused', page.text, re.S)
        await post_form(client, "/systems", "/systems/devhelm/resume")
        async with rig.gateway.store.tx() as tx:
            assert not (await tx.system_state("devhelm")).paused
        events = await client.get("/events")
        assert events.status_code == 200 and "data-event=" in events.text


async def test_a_failed_event_is_retried_from_the_events_page(store: Store) -> None:
    async with console(store) as (rig, client):
        async with rig.gateway.store.tx() as tx:
            (event_id,) = await tx.record_events(
                [
                    NewEvent(
                        system="hookstream",
                        delivery_id="evt_given_up",
                        source="webhook",
                        event_type="issue_opened",
                        body=b"not json",
                        state="failed",
                        outcome="gave up after 8 attempts: hookstream unreachable",
                    )
                ],
                now=utcnow(),
            )
        assert event_id is not None
        assert (await sign_in(client)).status_code == 303
        page = await client.get("/events", params={"state": "failed"})
        assert f'action="/ui/events/{event_id}/retry"' in page.text
        done = await post_form(
            client, "/events?state=failed", f"/events/{event_id}/retry", {"back": "/ui/events"}
        )
        assert f"Processing hookstream event {event_id} again" in flash(await follow(client, done))
        async with rig.gateway.store.tx() as tx:
            (event,) = await tx.list_events(system="hookstream")
        assert (event.state, event.attempts, event.outcome) == ("pending", 0, "retried by admin")
        await rig.gateway.worker.run_until_idle()  # processed again: this body is unreadable
        async with rig.gateway.store.tx() as tx:
            (event,) = await tx.list_events(system="hookstream")
        assert event.state == "failed" and event.attempts == 1
        assert (event.outcome or "").startswith("unreadable")
        refused = await post_form(client, "/events", f"/events/{event_id + 1}/retry")
        assert "Retry refused" in flash(await follow(client, refused))


def test_an_object_links_to_the_vendor_ui_when_its_system_has_a_ui_url() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from app.config.schema import SystemSettings
    from app.http.ui.items import object_url

    def system(ui_url: str | None) -> SystemSettings:
        return SystemSettings(base_url="https://api.example", api_key_env="K", ui_url=ui_url)

    gateway = cast(
        Any,
        SimpleNamespace(
            settings=SimpleNamespace(
                systems={
                    "devhelm": system("https://app.example/pages/{scope}/incidents/{external_id}"),
                    "inboxops": system(None),
                }
            )
        ),
    )
    assert object_url(gateway, "devhelm", "sp_1", "inc_9") == (
        "https://app.example/pages/sp_1/incidents/inc_9"
    )
    assert object_url(gateway, "devhelm", "sp_1", None) is None  # not created yet
    assert object_url(gateway, "inboxops", "", "t_1") is None


async def test_the_session_cookie_is_secure_behind_an_https_proxy(store: Store) -> None:
    """A reverse proxy on the same host that terminates TLS says so with
    X-Forwarded-Proto (docs/deployment.md): the session cookie is then Secure."""
    async with console(store) as (_, client):
        form = await client.get("/login")
        answer = await client.post(
            "/login",
            data={"key": KEY, "_csrf_token": token(form)},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert answer.status_code == 303
        cookie = next(
            h for h in answer.headers.get_list("set-cookie") if h.startswith("syncgate_session=")
        )
        assert "Secure" in cookie


async def test_unlink_link_relink_and_resync_from_the_work_item_page(store: Store) -> None:
    async with console(store) as (rig, client):
        item_id, links = await fan_out(rig)
        other_id, _ = await fan_out(rig, 1)
        assert (await sign_in(client)).status_code == 303
        page = f"/items/{item_id}"
        back = {"back": f"/ui{page}"}
        ticket = links["inboxops"]

        gone = await post_form(client, page, f"/links/{ticket['id']}/unlink", back)
        assert flash(await follow(client, gone)) == (
            f"Unlinked inboxops object {ticket['external_id']}."
        )
        assert f'data-link="{ticket["id"]}"' not in (await client.get(page)).text

        again = await post_form(
            client,
            page,
            f"/items/{item_id}/link",
            {"system": "inboxops", "external_id": ticket["external_id"]},
        )
        assert flash(await follow(client, again)) == (
            f"Linked inboxops object {ticket['external_id']}."
        )
        twice = await post_form(
            client,
            page,
            f"/items/{other_id}/link",
            {"system": "inboxops", "external_id": ticket["external_id"]},
        )
        assert "Link refused: Already linked (409)" in flash(await follow(client, twice))

        async with rig.gateway.store.tx() as tx:
            relinked = {link.system: link.id for link in await tx.links_of(item_id)}
        moved = await post_form(
            client,
            page,
            "/links/relink",
            {"link": str(relinked["inboxops"]), "work_item_id": other_id, **back},
        )
        assert flash(await follow(client, moved)) == (
            f"Moved the inboxops object to work item {other_id}."
        )
        async with rig.gateway.store.tx() as tx:
            assert (await tx.require_link(relinked["inboxops"])).work_item_id == other_id
            history = await tx.recent_history(item_id)
        assert any(h.kind == "unlinked" and h.event_id == "console" for h in history), history

        resynced = await post_form(client, page, f"/links/{relinked['devhelm']}/resync", back)
        assert flash(await follow(client, resynced)).startswith("Re-read devhelm: ")
        everything = await post_form(client, page, f"/items/{item_id}/resync")
        assert flash(await follow(client, everything)).startswith("Re-read ")


async def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (what a dry run must leave as it was)."""
    async with store.tx() as tx:
        return {
            table.name: sorted((tuple(r) for r in await tx._run(sa.select(table))), key=repr)
            for table in tables.metadata.sorted_tables
        }


async def test_onboarding_plans_without_changing_anything_then_carries_the_plan_out(
    store: Store,
) -> None:
    async with console(store) as (rig, client):
        assert (await sign_in(client)).status_code == 303
        issue = await rig.open_issue()  # never polled: the gateway has not seen it
        before, writes = await _rows(store), await rig.write_counts()

        form = await client.get("/onboarding")
        assert form.status_code == 200 and 'name="since"' in form.text
        assert 'href="/ui/onboarding" aria-current="page"' in form.text
        plan = await client.get(
            "/onboarding", params={"plan": "1", "systems": "hookstream", "since": "1d"}
        )
        assert plan.status_code == 200, plan.text[:500]
        row = re.search(rf'data-object="hookstream:{issue}" data-action="(\w+)"', plan.text)
        assert row and row.group(1) == "create", plan.text
        assert '<p class="count" id="summary">0 link, 1 create, 0 skip</p>' in plan.text
        assert await _rows(store) == before  # the dry run changed nothing
        assert await rig.writes_since(writes) == dict.fromkeys(writes, 0)

        bad = await client.get("/onboarding", params={"plan": "1", "since": "last tuesday"})
        assert bad.status_code == 422 and "neither a duration" in bad.text
        for since in ("99999999d", "0001-01-01T00:00:00+05:00"):
            far = await client.get("/onboarding", params={"plan": "1", "since": since})
            assert far.status_code == 422 and "since: " in far.text, far.text[:500]
        unknown = await client.get("/onboarding", params={"plan": "1", "systems": "jira"})
        assert unknown.status_code == 422 and "no enabled system named" in unknown.text

        since = re.search(r'name="since" value="([^"]+)"', plan.text.split('id="run-form"')[1])
        assert since is not None
        data = {"systems": "hookstream", "since": since.group(1), "confirm": "yes"}
        refused = await client.post("/onboarding/run", data=data)  # no CSRF token
        assert refused.status_code == 403
        unconfirmed = await client.post(
            "/onboarding/run", data={"_csrf_token": token(plan), **data, "confirm": ""}
        )
        assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
        far = await client.post(
            "/onboarding/run", data={"_csrf_token": token(plan), **data, "since": "99999999d"}
        )
        assert far.status_code == 422 and "before the year 1" in far.text, far.text[:500]
        assert await _rows(store) == before

        done = await client.post("/onboarding/run", data={"_csrf_token": token(plan), **data})
        assert done.status_code == 200, done.text[:500]
        outcome = re.search(
            rf'data-object="hookstream:{issue}".*?data-field="outcome">([^<]*)<', done.text, re.S
        )
        assert outcome and outcome.group(1) == "created", done.text
        async with store.tx() as tx:
            link = await tx.link_for(ObjectRef("hookstream", "", issue))
        assert link is not None
        assert f'href="/ui/items/{link.work_item_id}"' in done.text
        await rig.settle()
        assert set(await rig.links(link.work_item_id)) == {
            "hookstream",
            "devhelm",
            "inboxops",
            "incidentio",
        }
        # a second dry run finds it linked
        again = await client.get(
            "/onboarding", params={"plan": "1", "systems": "hookstream", "since": "1d"}
        )
        assert re.search(rf'data-object="hookstream:{issue}" data-action="skip"', again.text)
