"""Day one on tools full of history, with real processes: a first start leaves history
alone; ``syncgate backfill`` plans (a dry run changes nothing), carries out its plan, plans
nothing new the second time, and on an empty database relinks what Syncgate made by its
markers, with no new vendor object; link rules link instead of creating and report an
ambiguous match."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.inboxops.simulator_rules import SUPPORT_INBOX_ID
from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID
from app import tables
from tests.blackbox import (
    GatewayProcess,
    admin_client,
    eventually,
    free_port,
    gateway_env,
    settled,
    sim_objects,
    simulators,
    write_config,
)
from tests.cli_support import syncgate
from tests.conftest import open_store, postgres_url
from tests.rig import STATUS_PAGE_ID

pytestmark = pytest.mark.slow

SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")

#: An open hookstream issue fans out to the three others.
FAN_OUT = [
    {
        "name": "open-issue-fans-out",
        "system": "hookstream",
        "match": {"status_in": ["open"]},
        "create_in": [
            {"system": "devhelm", "scope": STATUS_PAGE_ID},
            {"system": "inboxops", "params": {"inbox_id": SUPPORT_INBOX_ID}},
            {"system": "incidentio", "scope": DEFAULT_INCIDENT_ID},
        ],
    }
]

#: The hookstream destination name, found in brackets in an InboxOps ticket's subject.
LINK_BY_DESTINATION = [
    {
        "name": "destination-in-subject",
        "left": {"system": "hookstream", "path": "destination_name"},
        "right": {"system": "inboxops", "path": "subject", "regex": r"\[([a-z0-9-]+)\]"},
    }
]


class Day:
    """The four simulators, a config, and the gateway serving it."""

    def __init__(
        self, sims: dict[str, Any], control: dict[str, httpx.AsyncClient], tmp: Path, port: int
    ) -> None:
        self.sims = sims
        self.control = control
        self.tmp = tmp
        self.port = port
        self.config = tmp / "config.yaml"
        self.gateway: GatewayProcess | None = None

    def configure(self, db: str, **overrides: Any) -> None:
        """A config on ``db``: an SQLite file name in the test's folder, or a URL."""
        urls = {name: str(client.base_url) for name, client in self.control.items()}
        overrides.setdefault("create_rules", FAN_OUT)
        systems = overrides.pop("systems", {})
        systems.setdefault("hookstream", {}).setdefault("poll_interval_s", 0.2)
        self.db_url = db if "://" in db else f"sqlite:///{self.tmp / db}"
        write_config(self.config, self.db_url, urls, systems=systems, **overrides)

    async def start(self, worker: str = "day-one") -> httpx.AsyncClient:
        self.gateway = GatewayProcess(self.config, self.port, worker, self.tmp / "gateway.log")
        await self.gateway.ready()
        return admin_client(self.gateway.url)

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    async def issue(self, name: str, status: str = "open") -> str:
        response = await self.control["hookstream"].post(
            "/_sim/seed",
            json={
                "destination_id": f"dst_{name}",
                "destination_name": name,
                "error_type": "http_5xx",
                "status": status,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["issue"]["id"])

    async def ticket(self, subject: str) -> str:
        response = await self.control["inboxops"].post("/_sim/seed", json={"subject": subject})
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])

    async def vendor_objects(self) -> dict[str, list[dict[str, Any]]]:
        return {name: await sim_objects(self.control[name]) for name in SYSTEMS}

    async def backfill(self, *args: str) -> tuple[int, str, str]:
        result = await asyncio.to_thread(
            syncgate, "backfill", "--config", str(self.config), *args, env=gateway_env()
        )
        return result.returncode, result.stdout, result.stderr

    async def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the gateway's database (SQLite or PostgreSQL)."""
        names = [table.name for table in tables.metadata.sorted_tables]
        if self.db_url.startswith("sqlite:///"):
            path = self.db_url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                return {
                    name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
                    for name in names
                }
        conn = await asyncpg.connect(self.db_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return {
                name: sorted(
                    (tuple(r) for r in await conn.fetch(f"SELECT * FROM {name}")), key=repr
                )
                for name in names
            }
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def day_one(tmp_path: Path) -> AsyncIterator[Day]:
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}", SYSTEMS) as (sims, control):
        day = Day(sims, control, tmp_path, port)
        try:
            yield day
        finally:
            await day.stop()


async def lookup(admin: httpx.AsyncClient, system: str, external_id: str) -> dict[str, Any] | None:
    response = await admin.get("/lookup", params={"system": system, "external_id": external_id})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


async def polled(admin: httpx.AsyncClient, system: str = "hookstream") -> bool:
    systems = (await admin.get("/systems")).json()["systems"]
    return any(s["name"] == system and s["last_poll_at"] is not None for s in systems)


async def items(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/work-items", params={"limit": 500})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def created_counts(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, int]:
    return {name: len(after[name]) - len(before[name]) for name in after}


def plan_lines(stdout: str) -> dict[str, str]:
    """A dry run's lines by external id (``<action> <system> <id>...``)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("link", "create", "skip"):
            out[parts[2].rstrip(":")] = line
    return out


# -- 1. a first start leaves history alone ------------------------------------------------------


async def test_a_first_start_over_history_creates_nothing_but_new_objects_still_fan_out(
    tmp_path: Path,
) -> None:
    async with day_one(tmp_path) as day:
        old_open = await day.issue("orders-webhook")
        old_resolved = await day.issue("billing-webhook", status="resolved")
        old_ticket = await day.ticket("Checkout down")
        ticket_rule = {
            "name": "ticket-fans-out",
            "system": "inboxops",
            "create_in": [{"system": "devhelm", "scope": STATUS_PAGE_ID}],
        }
        day.configure("gateway.db", create_rules=[*FAN_OUT, ticket_rule])
        before = await day.vendor_objects()
        async with await day.start() as admin:
            await eventually(lambda: polled(admin), timeout_s=30, what="a first poll")
            # a person edits the old ticket: its webhook reaches the gateway, about an
            # object made before the gateway was connected
            edit = await day.control["inboxops"].patch(
                f"/_sim/objects/{old_ticket}", json={"priority": "urgent"}
            )
            assert edit.status_code == 200, edit.text
            await day.sims["inboxops"].kit.flush()

            async def webhook_done() -> bool:
                page = (await admin.get("/events", params={"system": "inboxops"})).json()
                return any(
                    e["source"] == "webhook" and e["state"] == "done" for e in page["events"]
                )

            await eventually(webhook_done, timeout_s=30, what="the ticket's webhook handled")
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            before = await day.vendor_objects()  # less the person's edit
            assert await items(admin) == []
            for system, external_id in (
                ("hookstream", old_open),
                ("hookstream", old_resolved),
                ("inboxops", old_ticket),
            ):
                assert await lookup(admin, system, external_id) is None
            assert await day.vendor_objects() == before

            # what happens from now on is new: an issue opened now fans out
            new = await day.issue("search-webhook")

            async def fanned_out() -> bool:
                detail = await lookup(admin, "hookstream", new)
                return detail is not None and all(
                    link["state"] == "synced" and link["external_id"] for link in detail["links"]
                )

            await eventually(fanned_out, timeout_s=60, what="the new issue fanned out")
            assert len(await items(admin)) == 1
            assert created_counts(before, await day.vendor_objects()) == {
                "hookstream": 1,
                "devhelm": 1,
                "inboxops": 1,
                "incidentio": 1,
            }

            # the history is brought in on request, through the admin API: a dry run first
            refused = await admin.post("/backfill", json={"since": "last tuesday"})
            assert refused.status_code == 422, refused.text
            assert "last tuesday" in refused.json()["detail"]
            unknown = await admin.post("/backfill", json={"systems": ["jira"]})
            assert unknown.status_code == 422 and "jira" in unknown.json()["detail"]
            objects = await day.vendor_objects()
            dry = await admin.post("/backfill", json={"systems": ["hookstream"], "since": "1h"})
            assert dry.status_code == 200, dry.text
            plan = dry.json()
            assert plan["dry_run"] is True and plan["systems"] == ["hookstream"]
            assert plan["summary"] == "0 link, 1 create, 2 skip", plan
            actions = {line["external_id"]: line["action"] for line in plan["lines"]}
            assert actions == {old_open: "create", old_resolved: "skip", new: "skip"}
            assert len(await items(admin)) == 1
            assert await day.vendor_objects() == objects
            done = await admin.post(
                "/backfill", json={"systems": ["hookstream"], "since": "1h", "dry_run": False}
            )
            assert done.status_code == 200, done.text
            outcomes = {line["external_id"]: line["outcome"] for line in done.json()["lines"]}
            assert outcomes[old_open] == "created"
            assert await lookup(admin, "hookstream", old_open) is not None
            assert await lookup(admin, "hookstream", old_resolved) is None


# -- 2, 3. backfill: a plan, carried out once; markers rebuild an empty database -------------


async def pause_all(admin: httpx.AsyncClient, paused: bool) -> None:
    for system in SYSTEMS:
        action = "pause" if paused else "resume"
        response = await admin.post(f"/systems/{system}/{action}")
        assert response.status_code == 200, response.text


async def empty_database(db_kind: str, tmp_path: Path, name: str) -> str:
    """An empty, migrated database: an SQLite file, or the test PostgreSQL emptied."""
    if db_kind == "sqlite":
        return name
    store = await open_store("postgres", tmp_path)  # migrated, every table emptied
    await store.close()
    return postgres_url()


async def test_backfill_plans_without_changing_anything_then_does_exactly_the_plan_once(
    tmp_path: Path, db_kind: str
) -> None:
    async with day_one(tmp_path) as day:
        open_issue = await day.issue("orders-webhook")
        resolved = await day.issue("billing-webhook", status="resolved")
        ticket = await day.ticket("How do refunds work?")
        day.configure(await empty_database(db_kind, tmp_path, "gateway.db"))
        async with await day.start() as admin:
            await eventually(lambda: polled(admin), timeout_s=30, what="a first poll")
            # the webhooks of what was made before the gateway was up are retried by
            # the simulators on their schedule: all of them in before "settled" means it
            for sim in day.sims.values():
                await sim.kit.flush()
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            assert await items(admin) == []

            # the dry run, with every system paused so the serving gateway writes nothing
            await pause_all(admin, True)
            rows, objects = await day.rows(), await day.vendor_objects()
            writes = {name: len(sim.kit.writes()) for name, sim in day.sims.items()}
            code, out, err = await day.backfill("--since", "30d", "--dry-run")
            assert code == 0, err
            assert await day.rows() == rows
            assert await day.vendor_objects() == objects
            assert {name: len(sim.kit.writes()) for name, sim in day.sims.items()} == writes
            lines = plan_lines(out)
            assert {open_issue, resolved, ticket} <= set(lines), out
            assert lines[open_issue].startswith("create hookstream"), out
            assert "open-issue-fans-out" in lines[open_issue]
            assert lines[resolved].startswith("skip"), out
            assert "no creation rule matches" in lines[resolved]
            assert lines[ticket].startswith("skip"), out
            assert out.splitlines()[-2:] == [
                "0 link, 1 create, 2 skip",
                "dry run: nothing was changed",
            ], out
            await pause_all(admin, False)

            # the real run does what the plan said: one create, fanned out by the gateway
            code, out, err = await day.backfill("--since", "30d")
            assert code == 0, err
            [done_line] = [line for line in out.splitlines() if open_issue in line]
            assert done_line.startswith(f"create hookstream {open_issue} "), out
            assert done_line.endswith(": rule 'open-issue-fans-out' -> created"), out
            assert out.splitlines()[-2] == "done: 0 link, 1 create, 2 skip", out

            async def fanned_out() -> bool:
                detail = await lookup(admin, "hookstream", open_issue)
                return (
                    detail is not None
                    and len(detail["links"]) == 4
                    and all(link["state"] == "synced" for link in detail["links"])
                )

            await eventually(fanned_out, timeout_s=60, what="the backfilled issue fanned out")
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            assert len(await items(admin)) == 1
            after_run = await day.vendor_objects()
            assert created_counts(objects, after_run) == {
                "hookstream": 0,
                "devhelm": 1,
                "inboxops": 1,
                "incidentio": 1,
            }
            item_id = (await lookup(admin, "hookstream", open_issue) or {})["item"]["id"]

            # a second run plans nothing new, and changes nothing
            code, out, err = await day.backfill("--since", "30d")
            assert code == 0, err
            assert out.splitlines()[-1] == "done: 0 link, 0 create, 6 skip", out
            assert len(await items(admin)) == 1
            made = {
                link["system"]: link["external_id"]
                for link in (await lookup(admin, "hookstream", open_issue) or {})["links"]
            }
        await day.stop()

        # while the gateway is down a person resolves the ticket: the restore must not
        # undo it, the others follow it
        resolved = await day.control["inboxops"].patch(
            f"/_sim/objects/{made['inboxops']}", json={"status": "resolved", "priority": "low"}
        )
        assert resolved.status_code == 200, resolved.text
        after_run = await day.vendor_objects()

        # the database is lost: a gateway on an empty one creates nothing, and a backfill
        # relinks everything Syncgate made by its markers, with no new vendor object
        day.configure(await empty_database(db_kind, tmp_path, "restored.db"))
        async with await day.start("restored") as admin:
            await eventually(lambda: polled(admin), timeout_s=30, what="a first poll")
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            assert await items(admin) == []
            code, out, err = await day.backfill("--since", "30d", "--dry-run")
            assert code == 0, err
            assert out.splitlines()[-2] == "4 link, 0 create, 2 skip", out
            code, out, err = await day.backfill("--since", "30d")
            assert code == 0, err
            assert out.splitlines()[-1] == "done: 4 link, 0 create, 2 skip", out
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            restored = await items(admin)
            assert [item["id"] for item in restored] == [item_id]
            detail = await lookup(admin, "hookstream", open_issue)
            assert detail is not None
            assert {link["system"] for link in detail["links"]} == set(SYSTEMS)
            # the person's resolve won (it is newer than what the item was restored from)
            # and reached the other tools; no object was made
            assert (detail["item"]["status"], detail["item"]["priority"]) == ("resolved", "low")
            assert any(
                h["kind"] == "change" and h["system"] == "inboxops" and h["field"] == "status"
                for h in detail["history"]
            ), detail["history"]
            now = await day.vendor_objects()
            assert created_counts(after_run, now) == dict.fromkeys(SYSTEMS, 0)
            held = {
                name: {o["id"]: o for o in objects}[made[name]]["status"]
                for name, objects in now.items()
                if name != "hookstream"
            }
            assert held == {
                "inboxops": "resolved",
                "devhelm": "RESOLVED",
                "incidentio": "completed",
            }, held
            code, out, err = await day.backfill("--since", "30d", "--dry-run")
            assert out.splitlines()[-2] == "0 link, 0 create, 6 skip", out


# -- 4. link rules: match before create -------------------------------------------------------


async def test_a_link_rule_links_an_existing_ticket_instead_of_creating_one_and_reports_ambiguity(
    tmp_path: Path,
) -> None:
    async with day_one(tmp_path) as day:
        orders = await day.issue("orders-webhook")
        customers = await day.ticket("[orders-webhook] Checkout keeps failing")
        search = await day.issue("search-webhook")
        twins = [await day.ticket(f"[search-webhook] Search is slow ({n})") for n in (1, 2)]
        day.configure("gateway.db", link_rules=LINK_BY_DESTINATION)
        async with await day.start() as admin:
            await eventually(lambda: polled(admin), timeout_s=30, what="a first poll")
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            code, out, err = await day.backfill("--since", "1d", "--dry-run")
            assert code == 0, err
            lines = plan_lines(out)
            assert lines[orders].startswith("create hookstream"), out
            assert (
                f"linking inboxops {customers} by link rule 'destination-in-subject'"
                in (lines[orders])
            )
            assert lines[customers].startswith("link   inboxops"), out
            assert lines[search].startswith("skip   hookstream"), out
            assert "ambiguous link rule match" in lines[search]
            assert all(f"inboxops {twin}" in lines[search] for twin in twins)
            for twin in twins:
                assert lines[twin].startswith("skip"), out
            assert out.splitlines()[-2] == "1 link, 1 create, 3 skip", out

            before = await day.vendor_objects()
            code, out, err = await day.backfill("--since", "1d")
            assert code == 0, err

            async def synced() -> bool:
                detail = await lookup(admin, "hookstream", orders)
                return (
                    detail is not None
                    and len(detail["links"]) == 4
                    and all(link["state"] == "synced" for link in detail["links"])
                )

            await eventually(synced, timeout_s=60, what="the orders issue fanned out")
            detail = await lookup(admin, "inboxops", customers)
            assert (
                detail is not None
                and detail["item"]["id"]
                == ((await lookup(admin, "hookstream", orders)) or {})["item"]["id"]
            )
            assert any(
                h["kind"] == "linked" and "destination-in-subject" in (h["detail"] or "")
                for h in detail["history"]
            )
            # the customers' ticket was linked: no new InboxOps ticket
            assert created_counts(before, await day.vendor_objects()) == {
                "hookstream": 0,
                "devhelm": 1,
                "inboxops": 0,
                "incidentio": 1,
            }
            assert await lookup(admin, "hookstream", search) is None
            for twin in twins:
                assert await lookup(admin, "inboxops", twin) is None

            # new objects too: a ticket opened now about the orders destination is linked
            # to its item; a new issue on the search destination is ambiguous, not linked
            later = await day.ticket("[orders-webhook] Still failing for me")

            async def later_linked() -> bool:
                found = await lookup(admin, "inboxops", later)
                return found is not None and found["item"]["id"] == detail["item"]["id"]

            await eventually(later_linked, timeout_s=30, what="the new ticket linked by rule")
            response = await day.control["hookstream"].post(
                "/_sim/seed",
                json={
                    "destination_id": "dst_search_eu",
                    "destination_name": "search-webhook",
                    "error_type": "timeout",
                },
            )
            assert response.status_code == 201, response.text
            again = str(response.json()["issue"]["id"])

            log = tmp_path / "gateway.log"

            async def reported() -> bool:
                return any(
                    "ambiguous link rule match" in line and again in line
                    for line in log.read_text().splitlines()
                )

            await eventually(reported, timeout_s=30, what="the ambiguous match reported")
            page = (await admin.get("/events", params={"system": "hookstream"})).json()
            assert any("ambiguous" in (e["outcome"] or "") for e in page["events"]), page
            await eventually(lambda: settled(admin), timeout_s=30, what="settled")
            assert await lookup(admin, "hookstream", again) is None
            assert created_counts(before, await day.vendor_objects()) == {
                "hookstream": 1,
                "devhelm": 1,
                "inboxops": 1,
                "incidentio": 1,
            }


# -- the command line's errors ------------------------------------------------------------------


def test_backfill_refuses_a_wrong_command_line_and_an_unmigrated_database_in_one_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    urls = {name: "http://127.0.0.1:9" for name in SYSTEMS}
    write_config(config, f"sqlite:///{tmp_path / 'never-migrated.db'}", urls)

    def backfill(*args: str) -> tuple[int, list[str]]:
        result = syncgate("backfill", "--config", str(config), *args, env=gateway_env())
        assert result.stdout == "", result.stdout
        return result.returncode, result.stderr.splitlines()

    assert backfill("--since", "yesterday", "--dry-run") == (
        2,
        [
            "syncgate backfill: --since: 'yesterday' is neither a duration (30d, 12h, 45m) "
            "nor an ISO 8601 time"
        ],
    )
    assert backfill("--since", "99999999d", "--dry-run") == (
        2,
        ["syncgate backfill: --since: '99999999d' reaches back before the year 1"],
    )
    code, err = backfill("--since", "0001-01-01T00:00:00+05:00", "--dry-run")
    assert code == 2 and err[0].startswith("syncgate backfill: --since: ")
    assert err[0].endswith("is out of range (in UTC it is before the year 1 or after 9999)")
    code, err = backfill("--system", "jira", "--dry-run")
    assert code == 2 and len(err) == 1, err
    assert "--system 'jira' is not a configured system (configured: " in err[0]
    code, err = backfill("--dry-run")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("syncgate backfill: database: ")
    assert err[0].endswith("(run `syncgate migrate` (or serve once) first)")
    with contextlib.closing(sqlite3.connect(tmp_path / "never-migrated.db")) as conn:
        tables_made = conn.execute("SELECT name FROM sqlite_master").fetchall()
    assert tables_made == []  # a dry run writes nothing, not even a schema
