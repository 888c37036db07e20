"""The receivers' group commit: every delivery is answered after the commit that stored
it, and none waits forever when the database cannot take it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.inbox import EventWriter
from app.store import NewEvent
from tests.conftest import open_store


def _event(n: int) -> NewEvent:
    return NewEvent(
        system="inboxops", delivery_id=f"evt-{n}", source="webhook", event_type="x", body=b"{}"
    )


async def test_deliveries_that_arrive_together_are_stored_and_duplicates_named(
    tmp_path: Path,
) -> None:
    store = await open_store("sqlite", tmp_path)
    writer = EventWriter(store)
    ids = await asyncio.gather(*(writer.store_event(_event(n % 5)) for n in range(8)))
    async with store.tx() as tx:
        stored = await tx.list_events(limit=100)
    await store.close()
    assert len(stored) == 5
    new = [i for i in ids if i is not None]
    assert sorted(new) == sorted(e.id for e in stored)  # each stored once, ids handed back
    assert ids.count(None) == 3  # the second delivery of an event is a duplicate


class UnavailableStore:
    """A database that refuses every transaction."""

    @contextlib.asynccontextmanager
    async def tx(self, *, one_statement: bool = False) -> AsyncIterator[Any]:
        raise ConnectionRefusedError("database is unreachable")
        yield  # an async generator, never reached


async def test_deliveries_fail_promptly_when_the_database_is_unreachable() -> None:
    writer = EventWriter(UnavailableStore())  # type: ignore[arg-type]
    results = await asyncio.wait_for(
        asyncio.gather(*(writer.store_event(_event(n)) for n in range(3)), return_exceptions=True),
        timeout=10,
    )
    assert all(isinstance(r, ConnectionRefusedError) for r in results), results
