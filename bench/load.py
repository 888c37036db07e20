"""The load generator: signed InboxOps ``ticket.updated`` webhooks, sent from this process
with an efficient asyncio client (aiohttp when installed, else httpx), bounded by
concurrency, request counts and deadlines; and the measurements taken around them."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.signing import standard_headers
from bench.install import SECRETS, Installation, Item

try:
    import aiohttp
except ImportError:  # pragma: no cover - httpx fallback
    aiohttp = None  # type: ignore[assignment]

STATUS_NAMES = {"open": "Open", "resolved": "Resolved"}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_change(item: Item) -> tuple[bytes, dict[str, str]]:
    """The next change of ``item``: its ticket's status flipped open <-> resolved, as the
    signed webhook InboxOps would send."""
    item.status = "resolved" if item.status == "open" else "open"
    now = datetime.now(UTC)
    ticket = dict(
        item.ticket, status=item.status, status_name=STATUS_NAMES[item.status], updated_at=_iso(now)
    )
    event_id = f"evt_{uuid.uuid4()}"
    body = json.dumps(
        {"id": event_id, "type": "ticket.updated", "created_at": _iso(now), "data": ticket},
        separators=(",", ":"),
    ).encode()
    headers = {
        "content-type": "application/json",
        **standard_headers(SECRETS["inboxops"], event_id, int(time.time()), body),
    }
    return body, headers


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


class Sender:
    """POSTs prepared webhooks; returns (status, seconds, ack wall time)."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self._session: Any = None
        self._httpx: Any = None

    async def __aenter__(self) -> Sender:
        if aiohttp is not None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency, force_close=False),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        else:
            import httpx

            self._httpx = httpx.AsyncClient(
                timeout=30, limits=httpx.Limits(max_connections=self.concurrency)
            )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()
        if self._httpx is not None:
            await self._httpx.aclose()

    async def post(
        self, body: bytes, headers: dict[str, str], url: str | None = None
    ) -> tuple[int, float, float]:
        url = url or self.url
        start = time.perf_counter()
        try:
            if self._session is not None:
                async with self._session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            else:
                r = await self._httpx.post(url, content=body, headers=headers)
                status = r.status_code
        except Exception:  # noqa: BLE001 - a failed request is counted, not raised
            status = 0
        return status, time.perf_counter() - start, time.time()


async def hold_final_states(inst: Installation, items: Sequence[Item]) -> None:
    """Set each ticket in the InboxOps simulator to the status its last change built
    gives it (the gateway's own changes arrive as the webhooks built before this), as
    the real InboxOps would hold it. The webhooks alone leave the simulator's tickets as
    they were, and a gateway that reads a ticket (two webhooks of one ticket handled out
    of order: the older is read again, ``Engine._stepped_back``) took their old status
    for the newer one, and undid the changes. Timed outside the loop; the gateway takes
    no part."""
    if "inboxops" not in inst.sim_urls or inst.control is None or not items:
        return
    last = {item.ticket["id"]: item.status for item in items}
    gate = asyncio.Semaphore(16)

    async def hold(ticket_id: str, status: str) -> int:
        async with gate:
            assert inst.control is not None
            url = f"{inst.sim_urls['inboxops']}/_sim/objects/{ticket_id}"
            answer = await inst.control.patch(url, json={"status": status})
            if answer.status_code not in (200, 404):
                raise RuntimeError(f"inboxops PATCH {url}: {answer.status_code} {answer.text}")
            return answer.status_code

    (first, *rest) = last.items()
    if await hold(*first) == 404:
        return  # the tickets live in another installation's simulator, where none reads them
    await asyncio.gather(*(hold(t, s) for t, s in rest))


class Cursor:
    """Round-robin over the installation's items."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.i = 0

    def next(self) -> Item:
        item = self.items[self.i % len(self.items)]
        self.i += 1
        return item


async def closed_loop(
    inst: Installation,
    cursor: Cursor,
    concurrency: int,
    n: int,
    deadline_s: float,
    *,
    urls: list[str] | None = None,
    acked: list[tuple[Item, float]] | None = None,
) -> dict[str, Any]:
    """Send ``n`` changes with ``concurrency`` in flight; latency and rate of acceptance.

    ``urls``: webhook URLs shared out between the workers (several gateway processes
    behind a load balancer); the list may change while this runs (a process removed
    when it is killed). ``acked``: (item, send time) of each accepted change is appended
    as it is accepted."""
    items = [cursor.next() for _ in range(n)]
    changes = [(item, *build_change(item)) for item in items]
    await hold_final_states(inst, items)
    lat: list[float] = []
    bad = 0
    queue = iter(changes)
    end = time.monotonic() + deadline_s
    async with Sender(inst.webhook_url(), concurrency) as sender:

        async def worker(k: int) -> None:
            nonlocal bad
            for item, body, headers in queue:
                if time.monotonic() > end:
                    return
                url = urls[k % len(urls)] if urls else None
                sent = time.time()
                status, took, _ = await sender.post(body, headers, url)
                if status == 202:
                    lat.append(took)
                    if acked is not None:
                        acked.append((item, sent))
                else:
                    bad += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "sent": len(lat) + bad,
        "accepted": len(lat),
        "errors": bad,
        # when the first change was sent (perf_counter): after the simulator was set
        "started": start,
        "seconds": wall,
        "rate": len(lat) / wall if wall else 0.0,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "mean_ms": (statistics.fmean(lat) * 1000) if lat else float("nan"),
    }


async def open_loop(
    inst: Installation, cursor: Cursor, rate: float, seconds: float, max_in_flight: int = 256
) -> dict[str, Any]:
    """Offer ``rate`` changes per second for ``seconds``; returns what was accepted and
    the (ack wall time, item) of each accepted change."""
    sem = asyncio.Semaphore(max_in_flight)
    acks: list[tuple[float, Item, float]] = []
    bad = 0
    skipped = 0
    tasks: set[asyncio.Task[None]] = set()
    async with Sender(inst.webhook_url(), max_in_flight) as sender:

        async def one(item: Item, body: bytes, headers: dict[str, str]) -> None:
            nonlocal bad
            try:
                sent_at = time.time()
                status, _took, ack = await sender.post(body, headers)
                if status == 202:
                    acks.append((ack, item, sent_at))
                else:
                    bad += 1
            finally:
                sem.release()

        start = time.perf_counter()
        k = 0
        while True:
            due = start + k / rate
            now = time.perf_counter()
            if now - start >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if sem.locked():
                skipped += 1  # the target cannot keep up: do not queue without bound
                k += 1
                continue
            await sem.acquire()
            item = cursor.next()
            body, headers = build_change(item)
            task = asyncio.get_running_loop().create_task(one(item, body, headers))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        wall = time.perf_counter() - start
    return {
        "offered": k,
        "accepted": len(acks),
        "errors": bad,
        "skipped": skipped,
        "seconds": wall,
        "acks": acks,
    }
