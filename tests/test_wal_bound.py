"""SQLite's write-ahead log stays bounded while a real ``syncgate serve`` takes
deliveries without a pause (docs/reliability.md, "Bounded disk under load"): the
gateway empties it once it is past ``sqlite_wal_limit_mb``. Left to SQLite, a log whose
writes never pause is never started over, and grew to 12 GB in a 25-minute soak."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path

import httpx
import pytest

from tests.hostile.support import SAMPLES, gateway, signed

pytestmark = pytest.mark.slow

MB = 1024 * 1024
LIMIT_MB = 1
DELIVERIES = 6000
IN_FLIGHT = 16


def wal_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def test_the_log_stays_bounded_under_deliveries_that_never_pause(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    wal = Path(f"{db}-wal")
    sizes: list[int] = []
    async with gateway(tmp_path, sqlite_wal_limit_mb=LIMIT_MB) as gw:

        async def deliver(client: httpx.AsyncClient, worker: int) -> None:
            for n in range(worker, DELIVERIES, IN_FLIGHT):
                # a new ticket each, with a body of some size: every delivery writes
                ticket = dict(SAMPLES["inboxops"]["data"], id=f"tkt_{n}", body="x" * 2000)
                body = json.dumps(dict(SAMPLES["inboxops"], id=f"evt_{n}", data=ticket)).encode()
                headers = signed("inboxops", body)
                response = await client.post("/webhooks/inboxops", content=body, headers=headers)
                assert response.status_code == 202, response.text
                sizes.append(wal_size(wal))  # the log's size after each acknowledged commit

        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            await asyncio.gather(*(deliver(client, k) for k in range(IN_FLIGHT)))
    # the log's growth, summed over the samples (a start over trims the file back to the
    # limit, and what is written past it grows the file again)
    grown = sum(max(0, b - a) for a, b in itertools.pairwise(sizes))
    restarts = sum(b < a for a, b in itertools.pairwise(sizes))
    # once past the limit it is started over within about a second (the checkpointer's
    # round), so it peaks at the limit and a second of writes: a small part of what the
    # deliveries wrote (left alone, the peak is all of it: 192 MB for 192 MB written)
    assert max(sizes) <= max(4 * MB, grown / 3), (
        f"the log peaked at {max(sizes) / MB:.1f} MB while {grown / MB:.1f} MB were written"
        f" to it, started over {restarts} times"
    )
    # started over, not emptied: once past the limit, the file keeps the limit's blocks
    # and is written over, never cut below them (growing a file again costs more)
    past = list(itertools.dropwhile(lambda size: size < LIMIT_MB * MB, sizes))
    assert past and min(past) >= LIMIT_MB * MB, (
        f"the log was emptied, not started over: down to {min(past or [0]) / MB:.2f} MB"
    )
