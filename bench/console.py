"""How fast the console's pages render with a large database.

    python -m bench.console [--items 100000] [--repeat 20] [--database-url URL] [--keep]

Fills a database through the store, in bulk (``Tx.insert_items``,
``Tx.insert_seen_links``, ``Tx.add_history``, ``Tx.record_events``): ``--items`` work
items, each linked to an object in each of the four systems and with three history
entries, 20,000 events, and 200 dead writes. Then it signs in to the console served
in process (httpx over ASGI: the handler, the queries and the template, no network) and
prints each page's render time, median and 95th percentile over ``--repeat`` requests,
against the target of 100 ms, and the median CPU time of a request (the cost itself,
whatever else the machine runs). SQLite in a temporary folder by default; ``--database-url``
for PostgreSQL (an empty database; ANALYZE runs after the fill, as autovacuum would)."""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

from app.config import load_config
from app.config.secrets import ResolvedSecrets, SystemSecrets
from app.gateway import Gateway, known_systems
from app.http.app import create_app
from app.model import Fields, ObjectRef, Priority, Status, VendorObject, WorkItem
from app.store import HistoryEntry, NewEvent, Store

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")
NATIVE = {
    "hookstream": "open",
    "devhelm": "INVESTIGATING",
    "inboxops": "open",
    "incidentio": "open",
}
WORDS = [
    "checkout",
    "refunds",
    "search",
    "login",
    "payments",
    "webhooks",
    "invoices",
    "exports",
    "status",
    "api",
]
KEY = "bench-console-key"
TARGET_MS = 100.0
BATCH = 5000


async def fill(store: Store, items: int) -> tuple[str, str]:
    """The rows; returns a work item id in the middle and a word to search for (rare
    enough that a search reads every title)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    middle = ""
    for first in range(0, items, BATCH):
        batch = []
        links = []
        history = []
        for n in range(first, min(items, first + BATCH)):
            at = start + timedelta(seconds=n * 7)
            status = list(Status)[n % 7]
            item = WorkItem(
                id=f"{n:032x}",
                title=f"{WORDS[n % 10]} failing for customer {n}",
                description=f"{WORDS[(n // 10) % 10]} errors since {at:%H:%M}",
                status=status,
                priority=list(Priority)[n % 4],
                created_at=at,
                updated_at=at,
            )
            batch.append(item)
            for system in SYSTEMS:
                scope = "sp_1" if system == "devhelm" else ""
                obj = VendorObject(
                    ref=ObjectRef(system, scope, f"{system[:3]}_{n}"),
                    updated_at=at,
                    fields=Fields(title=item.title, status=status),
                    native={"status": NATIVE[system]},
                )
                links.append((item.id, obj))
            for kind, system in (("created", "inboxops"), ("change", "devhelm"), ("write", "")):
                history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind=kind,
                        field="status" if kind == "change" else None,
                        old_value="open" if kind == "change" else None,
                        new_value=str(status) if kind == "change" else None,
                        system=system or None,
                        at=at,
                    )
                )
            if n == items // 2:
                middle = item.id
        async with store.tx() as tx:
            await tx.insert_items(batch)
            await tx.insert_seen_links(links, now=start)
            await tx.add_history(history)
    async with store.tx() as tx:
        for chunk in range(0, 20_000, BATCH):
            await tx.record_events(
                [
                    NewEvent(
                        system=SYSTEMS[n % 4],
                        delivery_id=f"d{n}",
                        source="webhook" if n % 3 else "poll",
                        event_type="ticket.updated",
                        body=b'{"id": "x"}',
                        state="done",
                        outcome="changed",
                    )
                    for n in range(chunk, chunk + BATCH)
                ],
                now=start,
            )
        for n in range(0, min(items, 200 * 97), 97):
            link = (await tx.links_of(f"{n:032x}"))[1]
            await tx.dead_letter(link, "devhelm: rejected (HTTP 422)")
    return middle, WORDS[3]


async def measure(url: str, items: int, repeat: int) -> list[tuple[str, float, float, float]]:
    store = Store.connect(url)
    await store.migrate()
    began = time.perf_counter()
    middle, word = await fill(store, items)
    if url.startswith("postgresql"):
        # the statistics autovacuum gathers within a minute of a bulk load: without them
        # the planner takes the new table for a small one and scans it
        async with store.tx() as tx:
            await tx._run(sa.text("ANALYZE"))
    async with store.tx() as tx:
        middle_item = await tx.require_item(middle)
    deep = f"{middle_item.updated_at.isoformat()}~{middle}"
    print(
        f"filled {items:,} work items in {time.perf_counter() - began:.1f}s ({url.split(':')[0]})"
    )
    settings = load_config(ROOT / "app" / "defaults" / "config.yaml", known_systems())
    secrets = ResolvedSecrets(
        systems={name: SystemSecrets(api_key="unused") for name in settings.systems},
        admin_key=KEY,
    )
    gateway = Gateway(settings, secrets, store, run_pollers=False)
    app = create_app(gateway, manage_lifecycle=False)
    pages = {
        "work items, newest first": "/ui/items",
        "work items, 1000 pages deep": "/ui/items?" + urlencode({"after": deep}),
        "work items, status=waiting": "/ui/items?status=waiting",
        "work items, system=devhelm": "/ui/items?system=devhelm",
        f"work items, search {word!r}": f"/ui/items?q={word}",
        "work items, search, one match": f"/ui/items?q=customer+{items // 3}",
        "work items, live refresh": "/ui/items?status=open&fragment=live",
        "one work item": f"/ui/items/{middle}",
        "outbox, dead": "/ui/outbox?state=dead",
        "outbox, dead of devhelm": "/ui/outbox?state=dead&system=devhelm",
        "systems": "/ui/systems",
        "events": "/ui/events",
        "events, webhooks of inboxops": "/ui/events?source=webhook&system=inboxops",
    }
    results = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        form = await client.get("/ui/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        signed = await client.post("/ui/login", data={"key": KEY, "_csrf_token": token[1]})
        assert signed.status_code == 303, signed.text
        for name, path in pages.items():
            times = []
            cpu = []
            for _ in range(repeat + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                response = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            times, cpu = times[1:], cpu[1:]  # the first one warms the template cache
            p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
            results.append((name, statistics.median(times), p95, statistics.median(cpu)))
    await gateway.stop()
    await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="syncgate-console-bench-"))
    url = args.database_url or f"sqlite:///{folder / 'console.db'}"
    results = asyncio.run(measure(url, args.items, args.repeat))
    print(
        f"\n{'page':<34} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>8}  target {TARGET_MS:.0f} ms"
    )
    worst = 0.0
    for name, median, p95, cpu in results:
        worst = max(worst, p95)
        mark = "ok" if p95 < TARGET_MS else "SLOW"
        print(f"{name:<34} {median:>10.1f} {p95:>8.1f} {cpu:>8.1f}  {mark}")
    print(f"\nslowest p95: {worst:.1f} ms")
    if args.keep:
        print(f"database kept in {folder}")


if __name__ == "__main__":
    main()
