"""The floor: about the least any program can do for one InboxOps status change, in
Python, measured by the same harness as Syncgate.

A bare aiohttp server on uvloop (when installed). ``POST /webhooks/inboxops``: verify the
Standard Webhooks signature (HMAC-SHA256 over ``id.timestamp.body`` with the
base64-decoded ``whsec_`` secret, constant-time compare, 5-minute tolerance), store the
event in SQLite (WAL, ``synchronous=NORMAL``, one INSERT in autocommit), answer 202,
then make the three writes in parallel (hookstream PATCH, DevHelm PUT, incident.io PUT)
with one pooled aiohttp ClientSession. No canonical model, no links, no retries, no
history, no read before write, no logging: every real tool costs more than this.

With ``--reads`` it first reads each object (one GET on the same URL, body read) before
writing it, as the gateway does by default (``refresh_before_write``): the floor of a
tool that keeps the guarantee that a person's newer edit is seen before it is
overwritten (the floor does nothing with what it reads).

    python -m bench.floor --port P --db F --map map.json [--reads]
    (BASELINE_SECRET, BASELINE_<SYSTEM>_URL / _KEY, BASELINE_STATUS_PAGE in the env)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

HS = {"open": "open", "resolved": "resolved"}
DH = {"open": "INVESTIGATING", "resolved": "RESOLVED"}
IO = {"open": "outstanding", "resolved": "completed"}
TOLERANCE_S = 300

ACCEPTED = b'{"status":"accepted"}'
DUPLICATE = b'{"status":"duplicate"}'
JSON = "application/json"


def verify(key: bytes, headers: Any, body: bytes) -> bool:
    """Standard Webhooks: any ``v1,<base64>`` entry equal to HMAC-SHA256(key,
    ``id.timestamp.body``), the timestamp within the tolerance."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sig = headers.get("webhook-signature")
    if not msg_id or not ts or not sig:
        return False
    try:
        if abs(time.time() - int(ts)) > TOLERANCE_S:
            return False
    except ValueError:
        return False
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    )
    for entry in sig.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


class Floor:
    def __init__(self, db_path: str, mapping: dict[str, Any], *, reads: bool = False) -> None:
        self.reads = reads
        secret = os.environ["BASELINE_SECRET"]
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.mapping = mapping
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, delivery_id TEXT UNIQUE,"
            " body BLOB, received_at REAL)"
        )
        self.urls = {
            s: os.environ[f"BASELINE_{s.upper()}_URL"]
            for s in ("hookstream", "devhelm", "incidentio")
        }
        self.keys = {s: os.environ[f"BASELINE_{s.upper()}_KEY"] for s in self.urls}
        self.page = os.environ["BASELINE_STATUS_PAGE"]
        self.headers = {
            "hookstream": {"X-API-Key": self.keys["hookstream"], "Content-Type": JSON},
            "devhelm": {
                "Authorization": f"Bearer {self.keys['devhelm']}",
                "x-phelm-org-id": "1",
                "Content-Type": JSON,
            },
            "incidentio": {
                "Authorization": f"Bearer {self.keys['incidentio']}",
                "Content-Type": JSON,
            },
        }
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, _app: web.Application) -> None:
        # one pooled session; 32 connections per vendor, as the gateway's max_connections
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=32),
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def close(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(self.key, request.headers, body):
            return web.Response(status=401, body=b'{"error":"bad signature"}', content_type=JSON)
        try:
            event = msgspec.json.decode(body)
            ticket = event["data"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return web.Response(status=400, body=b'{"error":"bad body"}', content_type=JSON)
        try:
            self.db.execute(
                "INSERT INTO events (delivery_id, body, received_at) VALUES (?, ?, ?)",
                (request.headers["webhook-id"], body, time.time()),
            )
        except sqlite3.IntegrityError:
            return web.Response(status=202, body=DUPLICATE, content_type=JSON)
        task = asyncio.get_running_loop().create_task(self.fan_out(ticket))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.Response(status=202, body=ACCEPTED, content_type=JSON)

    async def fan_out(self, ticket: dict[str, Any]) -> None:
        ids = self.mapping.get(str(ticket.get("id")))
        status = ticket.get("status")
        if ids is None or status not in HS:
            return
        assert self.session is not None
        enc = msgspec.json.encode
        await asyncio.gather(
            self._send(
                "PATCH",
                "hookstream",
                f"/v1/issues/{ids['hookstream']}",
                enc({"status": HS[status]}),
            ),
            self._send(
                "PUT",
                "devhelm",
                f"/api/v1/status-pages/{self.page}/incidents/{ids['devhelm']}",
                enc({"status": DH[status]}),
            ),
            self._send(
                "PUT",
                "incidentio",
                f"/v3/follow_ups/{ids['incidentio']}",
                enc({"status": IO[status], "title": ids["title"]}),
            ),
            return_exceptions=True,
        )

    async def _send(self, method: str, system: str, path: str, body: bytes) -> None:
        assert self.session is not None
        url = self.urls[system] + path
        if self.reads:
            async with self.session.get(url, headers=self.headers[system]) as r:
                await r.read()
        async with self.session.request(method, url, data=body, headers=self.headers[system]) as r:
            await r.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--map", required=True)
    parser.add_argument("--reads", action="store_true", help="GET each object before its write")
    args = parser.parse_args()
    with open(args.map) as f:
        mapping = json.load(f)
    floor = Floor(args.db, mapping, reads=args.reads)
    app = web.Application()
    app.router.add_get("/healthz", floor.healthz)
    app.router.add_post("/webhooks/inboxops", floor.webhook)
    app.on_startup.append(floor.start)
    app.on_cleanup.append(floor.close)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the standard loop then
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
