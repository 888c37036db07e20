"""The HTTP layer's hygiene: authentication before anything else under /admin, ASCII ids
in paths, and every 5xx logged with a request id the client is given too. In process
(the app factory over a served rig) and against a real ``syncgate serve``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import httpx
import pytest

from app.http.problems import request_id_of
from app.store import Store
from tests.admin_support import admin, fan_out, problem
from tests.blackbox import ADMIN_KEY, GatewayProcess, free_port, write_config

SQLITE = pytest.mark.parametrize("db_kind", ["sqlite"])

# a method no admin route has, on a real admin path, and paths no admin route has
WRONG_METHODS = [
    ("PUT", "/admin/systems"),
    ("DELETE", "/admin/work-items"),
    ("GET", "/admin/outbox/retry-dead"),
    ("PATCH", "/admin/config"),
    ("HEAD", "/admin/systems"),
    ("OPTIONS", "/admin/systems"),
]
UNKNOWN_PATHS = ["/admin", "/admin/", "/admin/nothing-here", "/admin/work-items/x/y/z"]

# path ids that are digits only outside ASCII: superscript one, circled one, Arabic-Indic one
UNICODE_IDS = ["%C2%B9", "\u2460", "\u0661", "%EF%BC%91"]


@SQLITE
async def test_admin_answers_401_before_revealing_methods_or_paths(store: Store) -> None:
    async with admin(store) as (_, client):
        for method, path in [*WRONG_METHODS, *(("GET", p) for p in UNKNOWN_PATHS)]:
            for headers in ({"X-Admin-Key": ""}, {"X-Admin-Key": "nope"}):
                response = await client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert "allow" not in response.headers, (method, path)
                assert "bearer" in response.headers["www-authenticate"].lower()
                if method != "HEAD":
                    problem(response, 401)
        # with the key the same requests get their real answer
        for method, path in WRONG_METHODS[:4]:
            problem(await client.request(method, path), 405, method)
        for path in UNKNOWN_PATHS:
            assert (await client.get(path)).status_code == 404, path
        # paths outside /admin are not behind the key
        assert (await client.put("/healthz", headers={"X-Admin-Key": ""})).status_code == 405
        assert (await client.get("/nowhere", headers={"X-Admin-Key": ""})).status_code == 404


@SQLITE
async def test_unicode_digits_in_path_ids_are_refused_with_a_reason(store: Store) -> None:
    async with admin(store) as (_, client):
        for raw in UNICODE_IDS:
            for method, path in (
                ("GET", f"/admin/work-items/{raw}"),
                ("PATCH", f"/admin/work-items/{raw}"),
                ("POST", f"/admin/work-items/{raw}/resync"),
                ("DELETE", f"/admin/links/{raw}"),
                ("POST", f"/admin/links/{raw}/resync"),
                ("POST", f"/admin/outbox/{raw}/retry"),
                ("POST", f"/admin/outbox/{raw}/discard"),
            ):
                body = problem(await client.request(method, path, json={}), 400)
                assert "id" in body["detail"] and "regex" in body["detail"], body
        # an ASCII id of the right shape that names nothing is a 404, as before
        problem(await client.get("/admin/work-items/0123abcd"), 404, "0123abcd")
        problem(await client.post("/admin/outbox/7/retry"), 404)


@SQLITE
async def test_an_unexpected_error_is_a_logged_500_with_a_request_id(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with admin(store) as (rig, client):

        async def broken(*_: object, **__: object) -> int:
            raise RuntimeError("the disk caught fire")

        monkeypatch.setattr(rig.gateway.dispatcher, "retry_dead", broken)
        with caplog.at_level(logging.ERROR, logger="syncgate.http"):
            response = await client.post("/admin/outbox/retry-dead")
        body = problem(response, 500)
        rid = response.headers["x-request-id"]
        assert body["request_id"] == rid and rid in body["detail"]
        assert "fire" not in response.text  # no internals to the client
        (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
        assert record.message == "unexpected error" and record.exc_info is not None
        assert "fire" in str(record.exc_info[1])
        assert record.path == "/admin/outbox/retry-dead"  # type: ignore[attr-defined]

        # a caller's sane X-Request-Id is kept, a hostile one replaced
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="syncgate.http"):
            mine = await client.post("/admin/outbox/retry-dead", headers={"X-Request-Id": "lb-42"})
            evil = await client.post(
                "/admin/outbox/retry-dead", headers={"X-Request-Id": "<script>" + "x" * 100}
            )
        assert mine.headers["x-request-id"] == "lb-42" and mine.json()["request_id"] == "lb-42"
        assert evil.headers["x-request-id"] != "<script>" + "x" * 100
        assert len(evil.headers["x-request-id"]) == 16
        assert {getattr(r, "request_id", None) for r in caplog.records} == {
            "lb-42",
            evil.headers["x-request-id"],
        }
        # answers that are not errors carry an id too, and are not logged as errors
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="syncgate.http"):
            fine = await client.get("/admin/systems")
            others = [await client.get("/admin/systems") for _ in range(50)]
        assert fine.status_code == 200 and fine.headers["x-request-id"]
        assert not caplog.records
        ids = {r.headers["x-request-id"] for r in [fine, *others]}
        assert len(ids) == 51 and all(len(rid) == 16 for rid in ids), "request ids repeat"


def test_a_forked_process_makes_request_ids_of_its_own() -> None:
    """A pre-forking server's workers start from the parent's generator: each must seed
    its own, or parent and child hand out the same ids, one after another."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out at once
        try:
            os.write(write_end, request_id_of({}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ours = request_id_of({})
    with os.fdopen(read_end, "rb") as pipe:
        theirs = pipe.read().decode()
    os.waitpid(pid, 0)
    assert len(theirs) == 16 and theirs != ours


@SQLITE
async def test_a_5xx_without_an_exception_is_logged_once_with_its_request_id(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with admin(store) as (rig, client):

        async def down() -> bool:
            return False

        monkeypatch.setattr(rig.gateway.store, "ping", down)
        with caplog.at_level(logging.ERROR, logger="syncgate.http"):
            response = await client.get("/readyz")
        assert response.status_code == 503
        rid = response.headers["x-request-id"]
        (record,) = caplog.records
        assert record.message == "server error answered"
        assert (record.request_id, record.status, record.path) == (rid, 503, "/readyz")  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_a_served_gateway_checks_the_key_first_and_logs_a_5xx_with_its_id(
    tmp_path: Path,
) -> None:
    """A real ``syncgate serve``: wrong methods and unknown admin paths are 401 without
    the key; a vendor that cannot be reached gives a 502 whose request id is in the log;
    two gateways (as behind one load balancer, logging to one place) never hand out the
    same request id."""
    closed = free_port()  # nothing listens there: the vendor is down
    gateways = []
    for name in ("hygiene", "hygiene-2"):
        config = tmp_path / f"{name}.yaml"
        write_config(
            config,
            f"sqlite:///{tmp_path / name}.db",
            {"inboxops": f"http://127.0.0.1:{closed}"},
            create_rules=[],
        )
        gateways.append(GatewayProcess(config, free_port(), name, tmp_path / f"{name}.log"))
    gateway, other = gateways
    try:
        await asyncio.gather(gateway.ready(), other.ready())
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(client.get(f"{g.url}/healthz") for g in gateways for _ in range(40))
            )
        assert all(a.status_code == 200 for a in answers), answers
        ids = [a.headers["x-request-id"] for a in answers]
        assert len(set(ids)) == len(ids), "two gateways handed out the same request id"
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            for method, path in [*WRONG_METHODS, ("GET", "/admin/nothing-here")]:
                response = await client.request(method, path)
                assert response.status_code == 401, (method, path, response.text)
            unicode = await client.post(
                "/admin/outbox/%C2%B9/retry", headers={"X-Admin-Key": ADMIN_KEY}
            )
            assert unicode.status_code == 400 and "link_id" in unicode.json()["detail"]
            failed = await client.post(
                "/admin/work-items",
                headers={"X-Admin-Key": ADMIN_KEY},
                json={"title": "t", "links": [{"system": "inboxops", "external_id": "T-1"}]},
            )
        assert failed.status_code == 502, failed.text
        rid = failed.headers["x-request-id"]
        assert failed.json()["request_id"] == rid
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
    lines = [
        json.loads(line)
        for line in gateway.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    (logged,) = [line for line in lines if line.get("request_id") == rid]
    assert logged["level"] == "error" and logged["status"] == 502
    assert logged["path"] == "/admin/work-items"
    assert not [line for line in lines if line.get("status") == 500]


@SQLITE
async def test_what_schemathesis_found_stays_fixed(store: Store) -> None:
    """Findings of tests/hostile/test_admin_schema.py, each pinned by name."""
    async with admin(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        # OPTIONS lists every method of the path (litestar's own listed GET only)
        options = await client.options("/admin/work-items")
        assert options.status_code == 204
        assert set(options.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
        # a 405 says which methods there are
        wrong = await client.put("/admin/work-items")
        problem(wrong, 405)
        assert set(wrong.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
        # a huge offset is refused, not a 500 from the database
        problem(await client.get("/admin/outbox", params={"offset": 10**19}), 400, "offset")
        # a repeated query parameter is refused, not half read
        repeated = await client.get("/admin/work-items", params=[("text", "a"), ("text", "b")])
        problem(repeated, 400, "more than once: text")
        # snoozed_until is RFC 3339 text: a number is not read as 1970
        path = f"/admin/work-items/{item_id}"
        problem(await client.patch(path, json={"snoozed_until": 0}), 400, "snoozed_until")
        problem(await client.patch(path, json={"snoozed_until": "2026-12-02"}), 400)
        problem(await client.patch(path, json={"snoozed_until": "2026-13-45T00:00:00Z"}), 422)
        changed = await client.patch(path, json={"snoozed_until": "2026-12-24T09:00:00+01:00"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["item"]["snoozed_until"] == "2026-12-24T08:00:00Z"
        # a body with a field no schema names is refused, as the document now says
        problem(await client.patch(path, json={"title": "t", "colour": "red"}), 400, "colour")


#: Times that parse but are out of range in UTC, and durations reaching back before the
#: year 1: each was an OverflowError (a 500) before it was refused with a reason.
OUT_OF_RANGE = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"]
TOO_LONG_AGO = ["99999999d", "999999999999w", "9" * 5000 + "d"]


@SQLITE
async def test_times_out_of_range_are_refused_with_a_reason(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        for when in OUT_OF_RANGE:
            patched = await client.patch(
                f"/admin/work-items/{item_id}", json={"snoozed_until": when}
            )
            problem(patched, 422, "snoozed_until", "out of range")
            problem(await client.post("/admin/backfill", json={"since": when}), 422, "since")
        for since in TOO_LONG_AGO:
            planned = await client.post("/admin/backfill", json={"since": since})
            problem(planned, 422, "since", "before the year 1")
        async with rig.gateway.store.tx() as tx:
            assert (await tx.require_item(item_id)).snoozed_until is None


@SQLITE
async def test_health_answers_head_as_it_answers_get(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some monitors probe with HEAD: the same status as GET, and no body."""
    async with admin(store) as (rig, client):
        for path in ("/healthz", "/readyz"):
            answer = await client.head(path, headers={"X-Admin-Key": ""})
            assert (answer.status_code, answer.content) == (200, b""), path

        async def refuses() -> bool:
            return False

        monkeypatch.setattr(rig.gateway.store, "can_store_event", refuses)
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.head("/readyz")).status_code == 503
        assert (await client.head("/healthz")).status_code == 200


async def test_a_nul_in_the_input_is_refused_before_it_reaches_the_database(
    store: Store,
) -> None:
    """PostgreSQL takes no NUL in a text: anywhere in an admin request's query or body
    it is a 400 naming it, never a 500 from the database; a backslash spelled before
    ``u0000`` is text, not a NUL."""
    async with admin(store) as (rig, client):
        item_id, _ = await fan_out(rig)
        path = f"/admin/work-items/{item_id}"
        for body in ({"title": "Disk\u0000full"}, {"description": "a\u0000b"}):
            problem(await client.patch(path, json=body), 400, "NUL")
        created = await client.post("/admin/work-items", json={"title": "Disk\u0000full"})
        problem(created, 400, "NUL")
        looked_up = await client.get(
            "/admin/lookup", params={"system": "inboxops", "external_id": "T\u00001"}
        )
        problem(looked_up, 400, "NUL", "query")
        text = await client.patch(path, json={"description": "C:\\u0000 is text"})
        assert text.status_code == 200, text.text
        async with rig.gateway.store.tx() as tx:
            item = await tx.require_item(item_id)
        assert item.description == "C:\\u0000 is text" and "\x00" not in item.title
