"""Shared fixtures: databases (SQLite and PostgreSQL), HTTP clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import tables
from app.store import Store
from bench.db import fresh_pg_database

POSTGRES_ENV = "SYNCGATE_TEST_POSTGRES_URL"
_migrated: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets a PostgreSQL database of its own beside the one
    scripts/pg.sh made (``syncgate_test_gw0``, ...), created empty at the worker's start:
    the tests empty their tables, so two workers must never share one."""
    del config
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = os.environ.get(POSTGRES_ENV)
    if worker and base:
        name = f"{make_url(base).database}_{worker}"
        os.environ[POSTGRES_ENV] = asyncio.run(fresh_pg_database(base, name))


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        raise RuntimeError(
            f"{POSTGRES_ENV} is not set: run the suite with scripts/test, which starts a "
            "throwaway PostgreSQL server, or point it at an empty database"
        )
    return url


async def open_store(kind: str, tmp_path: Path) -> Store:
    """A migrated, empty store of ``kind`` ("sqlite" or "postgres")."""
    if kind == "sqlite":
        store = Store.connect(f"sqlite:///{tmp_path / 'syncgate.db'}")
        await store.migrate()
        return store
    url = postgres_url()
    store = Store.connect(url, pool_size=5)
    if url not in _migrated:
        await store.migrate()
        _migrated.add(url)
    async with store.engine.begin() as conn:
        names = ", ".join(t.name for t in tables.metadata.sorted_tables)
        await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return store


async def cut_connections(url: str) -> int:
    """End every other session on the PostgreSQL database of ``url`` (as a server restart
    or a firewall would); returns how many."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from app.store.database import normalize_url

    killer = create_async_engine(normalize_url(url), poolclass=NullPool)
    try:
        async with killer.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return len(rows.all())
    finally:
        await killer.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test run on PostgreSQL ``postgres``, so ``-m "not postgres"`` runs the
    suite without a server."""
    del config
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_kind") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(db_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(db_kind, tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client like the gateway's: short timeouts, no redirects."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        yield client
