"""``syncgate demo`` end to end: the four simulators and the gateway in this process, on free
ports, with the shipped config.yaml. The demo waits on conditions itself; the tests only
read what it printed and what it returned."""

from __future__ import annotations

import asyncio
import io
import os
import re
from pathlib import Path

import httpx
import pytest

from app.cli import build_parser, demo, scenario
from tests.blackbox import eventually

pytestmark = pytest.mark.slow

SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")
FREE_PORTS = dict.fromkeys(SYSTEMS, 0)
CREDENTIAL_ENVS = [
    f"SYNCGATE_{name.upper()}_{kind}" for name in SYSTEMS for kind in ("API_KEY", "WEBHOOK_SECRET")
]
SECRET_SHAPES = re.compile(r"hs_test_|dh_live_|ixk_live_|inc_live_|whsec_")
ROW = re.compile(
    r"^  (hookstream|devhelm|inboxops|incidentio)\s+(\S+)(?: \(#\d+\))?\s+(\S+)\s+(\S+)$"
)


@pytest.fixture(autouse=True)
def no_credentials_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_ENVS:
        monkeypatch.delenv(name, raising=False)


def table(text: str) -> dict[str, tuple[str, str, str]]:
    """system -> (object id, vendor status, canonical meaning) from the final table."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = (match[2], match[3], match[4])
    return rows


def timestamps(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"^\[\s*([\d.]+)s\]", text, flags=re.MULTILINE)]


async def test_the_demo_narrates_every_step_and_converges() -> None:
    out = io.StringIO()
    code = await demo.run_demo(
        demo.REPO_CONFIG, gateway_port=0, sim_ports=FREE_PORTS, deadline_s=45, out=out
    )
    text = out.getvalue()
    assert code == 0, text

    # each step's narration, in the order of the story (lines within a step may interleave)
    steps = [
        [
            r"hookstream opens issue iss_\w+ 'orders-webhook: http_5xx'",
            r"hookstream -> syncgate: webhook issue_opened -> 202",
            r"work item \w+ created from rule 'hookstream-issue-fans-out'",
            r"syncgate -> devhelm: POST /api/v1/status-pages/\S+/incidents -> 201",
            r"syncgate -> inboxops: POST /api/v1/tickets -> 201",
            r"syncgate -> incidentio: POST /v3/follow_ups -> 201",
            r"devhelm: incident \S+ created \(INVESTIGATING\)",
            r"inboxops: ticket \S+ \(#\d+\) created \(open\)",
            r"incidentio: follow-up \S+ created \(outstanding\)",
        ],
        [
            r"devhelm will answer the next write with 429 \(Retry-After: 2\), "
            r"then 2 writes with 500",
            r"moves InboxOps ticket #\d+ to in_progress",
            r"work item status open -> acknowledged \(changed in inboxops\)",
            r"syncgate -> hookstream: PATCH /v1/issues/\S+ -> 200 OK  status='acknowledged'",
            r"syncgate -> devhelm: PUT \S+ -> 429 Too Many Requests",
        ],
        [
            r"the others synced meanwhile: hookstream acknowledged, incidentio outstanding "
            r"\(already meant acknowledged: nothing to write\); devhelm is still INVESTIGATING",
        ],
        [
            r"syncgate -> devhelm: PUT \S+ -> 500 Internal Server Error",
            r"syncgate -> devhelm: PUT \S+ -> 200 OK  status='IDENTIFIED'",
            r"devhelm caught up: incident is IDENTIFIED",
        ],
        [
            r"resolves hookstream issue iss_\w+",
            r"work item status acknowledged -> resolved \(changed in hookstream\)",
            r"syncgate -> devhelm: PUT \S+ -> 200 OK  status='RESOLVED'",
            r"syncgate -> inboxops: PATCH \S+ -> 200 OK  status='resolved'",
            r"syncgate -> incidentio: PUT \S+ -> 200 OK  status='completed'",
        ],
        [r"converged: all four objects mean 'resolved'"],
    ]
    step_start = 0
    for step in steps:
        found = []
        for line in step:
            match = re.compile(line).search(text, step_start)
            assert match, f"narration lacks {line!r} (after offset {step_start}):\n{text}"
            found.append(match.end())
        step_start = max(found)
    # the gateway's own account of the failed writes (when it is seen may vary a little)
    assert re.search(r"syncgate: devhelm write failed .*429.*; next try in", text)
    assert re.search(r"syncgate: devhelm write failed .*500.*; next try in", text)
    assert len(re.findall(r"-> 500 Internal Server Error", text)) == scenario.SERVER_ERRORS

    rows = table(text)
    assert {system: row[1:] for system, row in rows.items()} == {
        "hookstream": ("resolved", "resolved"),
        "devhelm": ("RESOLVED", "resolved"),
        "inboxops": ("resolved", "resolved"),
        "incidentio": ("completed", "resolved"),
    }
    assert all(row[0] != "-" for row in rows.values()), rows
    assert re.search(r"^Work item \w+  'orders-webhook: http_5xx'", text, flags=re.MULTILINE)
    assert "NOT converged" not in text

    stamps = timestamps(text)
    assert stamps == sorted(stamps), "narration times never go back"
    assert stamps[-1] < 30, "the demo runs well under 30 s"
    assert not SECRET_SHAPES.search(text), "no key or secret is printed"
    assert not [name for name in CREDENTIAL_ENVS if name in os.environ], "environment restored"


async def test_a_vendor_that_keeps_failing_is_reported_not_converged(tmp_path: Path) -> None:
    out = io.StringIO()
    database = tmp_path / "demo.db"
    code = await demo.run_demo(
        demo.REPO_CONFIG,
        gateway_port=0,
        sim_ports=FREE_PORTS,
        database=database,
        deadline_s=8,
        faults={"devhelm": [{"status": 500, "count": 10_000, "methods": ["PUT"]}]},
        out=out,
    )
    text = out.getvalue()
    assert code == 1, text
    assert "!! timed out waiting for devhelm to catch up" in text
    assert "NOT converged" in text and "converged: all four" not in text
    rows = table(text)
    assert rows["devhelm"][1:] == ("INVESTIGATING", "open")
    assert re.search(
        r"devhelm: incident \S+ is INVESTIGATING \(open\); last write error: .*500", text
    )
    assert database.exists() and database.with_name("demo.db.log").exists()
    assert not SECRET_SHAPES.search(text)


def test_the_cli_has_a_demo_command() -> None:
    args = build_parser().parse_args(["demo", "--port", "0", "--database", "x.db", "--fresh"])
    assert args.func is demo.command
    assert (args.port, args.database, args.fresh, args.deadline) == (0, "x.db", True, 60.0)


async def test_keep_running_serves_until_stopped_and_prints_how_to_use_it() -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    run = asyncio.create_task(
        demo.run_demo(
            demo.REPO_CONFIG,
            gateway_port=0,
            sim_ports=FREE_PORTS,
            deadline_s=45,
            out=out,
            keep_running=stop,
        )
    )

    async def waiting() -> bool:
        assert not run.done(), out.getvalue()
        return "Still running" in out.getvalue()

    await eventually(waiting, timeout_s=60, what="the demo to finish its scenario and wait")
    text = out.getvalue()
    key = re.search(r"export SYNCGATE_ADMIN_KEY=(\S+)", text)
    gateway = re.search(r"gateway\s+(http://\S+)\s+admin API", text)
    assert key and gateway, text
    async with httpx.AsyncClient(base_url=gateway[1], timeout=10) as client:
        items = await client.get("/admin/work-items", headers={"X-Admin-Key": key[1]})
        assert items.status_code == 200 and items.json()["total"] >= 1, items.text
        refused = await client.get("/admin/work-items", headers={"X-Admin-Key": "wrong"})
        assert refused.status_code == 401
        # the shipped config's description rule: hookstream's last error text (the
        # scenario's failing destination) goes to the follow-up, never to DevHelm's
        # public status page
        held = {}
        for system in ("devhelm", "incidentio"):
            url = re.search(rf"^  {system}\s+(http://\S+)", text, flags=re.MULTILINE)
            assert url, text
            held[system] = (await client.get(f"{url[1]}/_sim/objects")).text
        error = "orders.example.com/hooks"
        assert error in held["incidentio"], held
        assert error not in held["devhelm"], held["devhelm"]
    stop.set()
    assert await asyncio.wait_for(run, 30) == 0
