"""The suite's own isolation under pytest-xdist (scripts/test runs two workers): each
worker's tests use a PostgreSQL database no other worker uses, since the tests empty
the tables they use; in one process (``-n 0``) they use the one database."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import open_store, postgres_url


@pytest.mark.postgres
async def test_a_worker_uses_a_database_of_its_own(tmp_path: Path) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = make_url(postgres_url())
    assert url.database is not None
    if worker is None:  # one process (-n 0): the one database scripts/pg.sh made
        assert not re.search(r"_gw\d+$", url.database), url.database
    else:
        assert url.database.endswith(f"_{worker}"), url.database
    store = await open_store("postgres", tmp_path)
    try:
        async with store.engine.connect() as conn:
            on = (await conn.exec_driver_sql("SELECT current_database()")).scalar()
        assert on == url.database  # the store the tests open is on the worker's database
    finally:
        await store.close()
