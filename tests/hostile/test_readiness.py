"""``/readyz`` means the gateway can store a webhook: with a database that refuses writes
(a trigger refusing inserts on SQLite; ``default_transaction_read_only`` on PostgreSQL)
it answers 503 while ``/healthz`` still answers, and ready again once writes work."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.blackbox import eventually
from tests.conftest import open_store, postgres_url
from tests.hostile.support import gateway, sample, signed

pytestmark = pytest.mark.slow


async def readiness(url: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/readyz")
        return response.status_code, response.json()


async def test_readyz_fails_while_sqlite_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    async with gateway(tmp_path, database_url=f"sqlite:///{path}") as gw:
        status, body = await readiness(gw.url)
        assert (status, body["writable"]) == (200, True)
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse_writes BEFORE INSERT ON events "
                "BEGIN SELECT RAISE(ABORT, 'the disk refuses writes'); END"
            )
        status, body = await readiness(gw.url)
        assert status == 503
        assert body == {
            "status": "not ready",
            "database": True,  # reads still work
            "writable": False,
            "systems": ["devhelm", "hookstream", "inboxops", "incidentio"],
        }
        # consistent with what a sender sees: the delivery is not acknowledged
        async with httpx.AsyncClient(base_url=gw.url) as client:
            body_bytes = sample("inboxops")
            refused = await client.post(
                "/webhooks/inboxops", content=body_bytes, headers=signed("inboxops", body_bytes)
            )
            assert refused.status_code >= 500
            assert (await client.get("/healthz")).status_code == 200
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse_writes")
        status, body = await readiness(gw.url)
        assert (status, body["writable"]) == (200, True)
        with sqlite3.connect(path) as db:  # the probes left nothing behind
            assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)


@pytest.mark.postgres
async def test_readyz_fails_while_postgres_is_read_only(tmp_path: Path) -> None:
    store = await open_store("postgres", tmp_path)  # migrated and empty
    url = postgres_url()

    async def set_read_only(on: bool) -> None:
        """For new sessions, then end the gateway's sessions so its pool reconnects."""
        async with store.engine.connect() as conn:  # type: ignore[union-attr]
            await conn.execute(sa.text("COMMIT"))
            name = (await conn.execute(sa.text("SELECT current_database()"))).scalar_one()
            setting = "on" if on else "off"
            await conn.execute(
                sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {setting}')
            )
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

    try:
        async with gateway(tmp_path, database_url=url) as gw:
            assert (await readiness(gw.url))[0] == 200
            await set_read_only(True)

            async def not_ready() -> bool:
                status, body = await readiness(gw.url)
                return status == 503 and body["writable"] is False and body["database"] is True

            await eventually(not_ready, timeout_s=20, what="/readyz reports the database read-only")
            await set_read_only(False)

            async def ready() -> bool:
                return (await readiness(gw.url))[0] == 200

            await eventually(ready, timeout_s=20, what="/readyz ready again")
    finally:
        await set_read_only(False)
        await store.close()
