"""The operator CLI (``syncgate status | dead-letters | link | item``) against a served
gateway and the simulators, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from app.cli import main
from app.serving import bind_socket, serve_asgi
from app.store import Store
from tests.admin_support import KEY, admin, fan_out, fault, ok
from tests.blackbox import eventually
from tests.contract.kits import KITS


async def cli(*argv: str) -> int:
    """Run ``syncgate ARGV`` in a thread (its HTTP client is synchronous; the gateway
    keeps serving on this event loop)."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture(autouse=True)
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCGATE_ADMIN_KEY", KEY)
    monkeypatch.delenv("SYNCGATE_URL", raising=False)


async def test_status_prints_an_aligned_table(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin(store) as (rig, client):
        await fan_out(rig)
        ok(await client.post("/admin/systems/devhelm/pause"))
        monkeypatch.setenv("SYNCGATE_URL", rig.gateway_url)
        assert await cli("status") == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split() == [
        "SYSTEM",
        "STATE",
        "PAUSED",
        "LAST",
        "POLL",
        "LAG",
        "QUEUE",
        "DEAD",
        "DEFERRED",
        "UNTIL",
        "LAST",
        "ERROR",
    ]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert set(rows) == {"hookstream", "devhelm", "inboxops", "incidentio"}
    paused = header.index("PAUSED")
    assert rows["devhelm"][paused:].startswith("yes")
    assert rows["inboxops"][paused:].startswith("no")
    queue = header.index("QUEUE")
    assert all(row[queue:].split()[0] == "0" for row in rows.values())
    assert lines[-1].split() == [
        "queue",
        "depth:",
        "0",
        "dead",
        "letters:",
        "0",
        "pending",
        "events:",
        "0",
    ]


async def test_dead_letters_listed_retried_and_discarded(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        url = ("--url", rig.gateway_url)
        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        await fault(rig, "devhelm", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()

        assert await cli("dead-letters", *url) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split()[:3] == ["LINK", "WORK", "ITEM"]
        assert str(links["inboxops"]["id"]) in out and str(links["devhelm"]["id"]) in out
        assert "2 dead letter(s)" in out

        assert await cli("dead-letters", "--retry-all", *url) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line.split()[:2] for line in out[:2]] == [
            ["[1/2]", "retried"],
            ["[2/2]", "retried"],
        ]
        assert out[-1] == "2 retried"
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", links["inboxops"]["external_id"]))[
            "status"
        ] == "resolved"
        assert (await rig.object("devhelm", links["devhelm"]["external_id"]))[
            "status"
        ] == "RESOLVED"

        await fault(rig, "inboxops", status=422, count=1, methods=["PUT", "PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "open"}))
        await rig.gateway.dispatcher.run_until_idle()
        assert await cli("dead-letters", "--discard-all", *url) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("[1/1] discarded link") and out[-1] == "1 discarded"
        assert await cli("dead-letters", *url) == 0
        assert capsys.readouterr().out.strip() == "no dead letters"
        assert (await rig.object("inboxops", links["inboxops"]["external_id"]))[
            "status"
        ] == "resolved"

    with pytest.raises(SystemExit) as exc:
        main(["dead-letters", "--retry-all", "--discard-all"])
    assert exc.value.code == 2


async def test_link_and_show_an_item(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    async with admin(store) as (rig, client):
        url = ("--url", rig.gateway_url)
        item = ok(await client.post("/admin/work-items", json={"title": "Refunds stuck"}), 201)
        item_id = item["item"]["id"]
        ticket = (await KITS["inboxops"].seed(rig.control["inboxops"], 4)).external_id

        assert await cli("link", item_id, "inboxops", ticket, *url) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"linked inboxops {ticket} to work item {item_id}")
        await rig.gateway.dispatcher.run_until_idle()
        assert (await rig.object("inboxops", ticket))["subject"] == "Refunds stuck"

        assert await cli("item", item_id, *url) == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"work item {item_id}")
        assert "Refunds stuck" in shown and ticket in shown
        assert "linked" in shown and "created" in shown  # history
        # the history names the object each entry is about
        (linked,) = [line for line in shown.splitlines() if line.split()[2:3] == ["linked"]]
        assert linked.split()[3:5] == ["inboxops", ticket], linked  # after the date and time
        assert await cli("item", f"inboxops:{ticket}", *url) == 0
        assert capsys.readouterr().out == shown

        # errors: already linked, unknown object, unknown item
        assert await cli("link", item_id, "inboxops", ticket, *url) == 1
        err = capsys.readouterr().err
        assert "(409)" in err and item_id in err
        assert await cli("link", item_id, "inboxops", "tkt_nope", *url) == 1
        assert "(404)" in capsys.readouterr().err
        assert await cli("item", "inboxops:tkt_nope", *url) == 1
        assert "no work item is linked" in capsys.readouterr().err
        assert await cli("item", "nope", *url) == 1
        assert "no work item 'nope'" in capsys.readouterr().err


async def test_unreachable_gateway_and_refused_key(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = bind_socket()
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    assert await cli("status", "--url", closed) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"syncgate: cannot reach the gateway at {closed}")

    async with admin(store) as (rig, _):
        monkeypatch.setenv("SYNCGATE_ADMIN_KEY", "not-the-key")
        assert await cli("status", "--url", rig.gateway_url) == 1
        assert "refused the admin key: wrong admin key" in capsys.readouterr().err
        monkeypatch.delenv("SYNCGATE_ADMIN_KEY")
        assert await cli("dead-letters", "--url", rig.gateway_url) == 1
        err = capsys.readouterr().err
        assert "SYNCGATE_ADMIN_KEY is not set" in err and "admin key required" in err


async def test_pause_resume_retry_and_json_output(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    async with admin(store) as (rig, client):
        item_id, links = await fan_out(rig)
        url = ("--url", rig.gateway_url)
        assert await cli("pause", "devhelm", *url) == 0
        assert "devhelm paused" in capsys.readouterr().out
        assert await cli("status", "-o", "json", *url) == 0
        systems = {s["name"]: s for s in json.loads(capsys.readouterr().out)["systems"]}
        assert systems["devhelm"]["paused"] is True and systems["inboxops"]["paused"] is False
        assert await cli("resume", "devhelm", *url) == 0
        assert "devhelm resumed" in capsys.readouterr().out
        # resuming requests a DevHelm poll: let it end, or its transaction may hold the
        # item's links (PostgreSQL row locks) when the writes below are claimed, and a
        # claim skips locked links (the running dispatcher claims them a moment later)
        await asyncio.gather(*rig.gateway.pollers.pending_requests())
        await fault(rig, "devhelm", status=422, count=1, methods=["PUT"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()  # the DevHelm write is dead-lettered
        assert await cli("retry", str(links["devhelm"]["id"]), *url) == 0
        assert f"retrying link {links['devhelm']['id']}: devhelm" in capsys.readouterr().out

        async def retried_write_done() -> bool:
            await rig.gateway.dispatcher.run_until_idle()
            detail = ok(await client.get(f"/admin/work-items/{item_id}"))
            return all(link["state"] == "synced" for link in detail["links"])

        await eventually(retried_write_done, timeout_s=30, what="the retried write done")
        assert await cli("retry", str(links["devhelm"]["id"]), *url) == 1  # nothing pending now
        assert "(409)" in capsys.readouterr().err


async def test_each_argument_stays_one_segment_of_the_path(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """An argument is escaped into one segment of the admin API's path: pasted in as it
    was, ``pause 'devhelm/../hookstream/resume#'`` resumed hookstream, and
    ``item ../systems`` read /admin/systems and ended in a KeyError."""
    async with admin(store) as (rig, client):
        url = ("--url", rig.gateway_url)
        ok(await client.post("/admin/systems/hookstream/pause"))
        assert await cli("pause", "devhelm/../hookstream/resume#", *url) == 1
        assert "(404)" in capsys.readouterr().err
        systems = ok(await client.get("/admin/systems"))["systems"]
        assert {s["name"]: s["paused"] for s in systems}["hookstream"] is True
        for ref in ("../systems", "..", ".", "a?b#c%2F"):
            assert await cli("item", ref, *url) == 1, ref
            (line,) = capsys.readouterr().err.splitlines()
            assert re.match(r"syncgate: GET /admin/work-items/\S+ failed \((400|404)\)", line)
        assert await cli("retry", "../../systems/devhelm/pause", *url) == 1
        assert "(404)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["item", ""], ["pause", " "], ["resume", ""], ["retry", ""], ["link", "", "inboxops", "x"]],
)
def test_an_empty_reference_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must not be empty" in capsys.readouterr().err


async def test_an_answer_without_what_the_command_reads_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Something else than a Syncgate gateway at --url (or another version of it): what
    its answer lacks is named, not a KeyError."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"systems": []}'})

    async with serve_asgi(app, lifespan="off") as url:
        for argv in (["item", "7"], ["pause", "devhelm"], ["status"]):
            assert await cli(*argv, "--url", url) == 1, argv
            (line,) = capsys.readouterr().err.splitlines()
            assert line.startswith(f"syncgate: the gateway at {url} answered "), line
            assert "without '" in line and "Syncgate gateway" in line, line


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout -1`` ended in a ValueError traceback, and ``--timeout 0`` in a
    misleading 'cannot reach the gateway (Operation now in progress)'."""
    with pytest.raises(SystemExit) as exc:
        main(["status", "--timeout", timeout])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("syncgate status: error: argument --timeout:"), err
    assert "seconds" in err and repr(timeout) in err, err
