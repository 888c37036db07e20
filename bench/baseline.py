"""The baseline: the least a gateway must do for one InboxOps status change, as a bare
ASGI app (no framework), measured by the same harness as Syncgate.

``POST /webhooks/inboxops``: verify the Standard Webhooks signature, store the event in
SQLite (WAL, one INSERT and COMMIT, ``synchronous=NORMAL`` like the gateway), answer 202,
then fan out the three writes in parallel (hookstream PATCH, DevHelm PUT, incident.io PUT)
with one pooled httpx client per vendor. No canonical model, no links table, no retries,
no history: the figures it gives are a floor, not a competitor.

    python -m bench.baseline --port P --db F --map map.json
    (BASELINE_SECRET, BASELINE_<SYSTEM>_URL / _KEY, BASELINE_STATUS_PAGE in the env)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import uvicorn

from adapters.signing import standard_verify

HS = {"open": "open", "resolved": "resolved"}
DH = {"open": "INVESTIGATING", "resolved": "RESOLVED"}
IO = {"open": "outstanding", "resolved": "completed"}


class Baseline:
    def __init__(self, db_path: str, mapping: dict[str, Any]) -> None:
        self.secret = os.environ["BASELINE_SECRET"]
        self.mapping = mapping
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, delivery_id TEXT UNIQUE,"
            " body BLOB, received_at TEXT)"
        )
        self.urls = {
            s: os.environ[f"BASELINE_{s.upper()}_URL"]
            for s in ("hookstream", "devhelm", "incidentio")
        }
        self.keys = {s: os.environ[f"BASELINE_{s.upper()}_KEY"] for s in self.urls}
        self.page = os.environ["BASELINE_STATUS_PAGE"]
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.limit = asyncio.Semaphore(64)

    def client(self, system: str) -> httpx.AsyncClient:
        if system not in self.clients:
            self.clients[system] = httpx.AsyncClient(
                base_url=self.urls[system],
                timeout=10.0,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            )
        return self.clients[system]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    for c in self.clients.values():
                        await c.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/healthz":
            await self.respond(send, 200, b'{"status":"ok"}')
            return
        if scope["method"] != "POST" or scope["path"] != "/webhooks/inboxops":
            await self.respond(send, 404, b"{}")
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            standard_verify([self.secret], headers, body, datetime.now(UTC))
            event = msgspec.json.decode(body)
        except Exception:  # noqa: BLE001 - any bad delivery is a 401 here
            await self.respond(send, 401, b'{"error":"bad signature"}')
            return
        try:
            self.db.execute(
                "INSERT INTO events (delivery_id, body, received_at) VALUES (?, ?, ?)",
                (headers["webhook-id"], body, datetime.now(UTC).isoformat()),
            )
        except sqlite3.IntegrityError:
            await self.respond(send, 202, b'{"status":"duplicate"}')
            return
        await self.respond(send, 202, b'{"status":"accepted"}')
        task = asyncio.get_running_loop().create_task(self.fan_out(event["data"]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def respond(send: Any, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def fan_out(self, ticket: dict[str, Any]) -> None:
        ids = self.mapping.get(ticket["id"])
        status = ticket["status"]
        if ids is None or status not in HS:
            return
        async with self.limit:
            await asyncio.gather(
                self.client("hookstream").patch(
                    f"/v1/issues/{ids['hookstream']}",
                    json={"status": HS[status]},
                    headers={"X-API-Key": self.keys["hookstream"]},
                ),
                self.client("devhelm").put(
                    f"/api/v1/status-pages/{self.page}/incidents/{ids['devhelm']}",
                    json={"status": DH[status]},
                    headers={"Authorization": f"Bearer {self.keys['devhelm']}"},
                ),
                self.client("incidentio").put(
                    f"/v3/follow_ups/{ids['incidentio']}",
                    json={"status": IO[status], "title": ids["title"]},
                    headers={"Authorization": f"Bearer {self.keys['incidentio']}"},
                ),
                return_exceptions=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--map", required=True)
    args = parser.parse_args()
    with open(args.map) as f:
        mapping = json.load(f)
    app = Baseline(args.db, mapping)
    from app.serving import bind_socket

    sock = bind_socket("127.0.0.1", args.port)

    async def run() -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        await uvicorn.Server(config).serve(sockets=[sock])

    asyncio.run(run())


if __name__ == "__main__":
    main()
