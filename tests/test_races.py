"""Interleavings the pipeline must survive: a change that lands while a write of an older
state is in flight. The dispatcher's steps (claim, call, record) are driven one at a time,
so the interleaving is exact, not left to timing."""

from __future__ import annotations

import asyncio

from app.store import Store
from tests.rig import ALL_OPEN, linked, running_rig, statuses


async def test_a_change_during_an_in_flight_write_is_written_after_it(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        # the issue is resolved: the three other objects are dirty, and their writes go out
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await dispatcher._claim(10)
        assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        # the vendors now hold "resolved"; before those writes are recorded, the issue
        # reopens. The links still say their objects hold "open", which is the new
        # canonical state: only the write in flight says otherwise.
        await rig.human("hookstream", ids["hookstream"], status="open")
        await rig.poll("hookstream")
        await dispatcher._record(attempts)
        # no poll may repair it: the dispatcher alone must know to write again
        await dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_OPEN
