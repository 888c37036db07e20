"""A finished write starts the next one at once: the dispatcher's claim loop, waiting
for room with every slot busy, is woken when a write frees one (``Dispatcher.run``,
``finished``), not at its next idle round (``idle_s``, half a second). A real
``syncgate serve`` allowed one write at a time, the simulators answering each call in
25 ms: a backlog of creates drains at the vendors' pace. Were the loop to look for room
only every idle round it would start about two writes a round, and the backlog below
would take more than 12 s; the test allows 6 s (about 2 s is usual)."""

from __future__ import annotations

import inspect
import time
from collections import Counter
from pathlib import Path

import pytest

from app.dispatcher import Dispatcher
from tests.blackbox import eventually, free_port, sim_objects, simulators, sqlite_gateway

pytestmark = pytest.mark.slow

TICKETS = 24  # each fans out into a DevHelm incident and an incident.io follow-up
LATENCY_MS = 25
#: The claim loop's idle round: ``Dispatcher.run``'s ``idle_s``, which the gateway leaves
#: at its default.
IDLE_S = inspect.signature(Dispatcher.run).parameters["idle_s"].default


async def test_a_finished_write_starts_the_next_without_waiting_for_an_idle_round(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (_sims, control):
        for name in ("devhelm", "incidentio"):
            response = await control[name].put("/_sim/latency", json={"ms": LATENCY_MS})
            assert response.is_success, response.text
        gateway = sqlite_gateway(tmp_path, control, port, "wake", dispatcher={"concurrency": 1})
        try:
            await gateway.ready()
            subjects = [f"Checkout fails for customer {n}" for n in range(TICKETS)]
            started = time.monotonic()
            for subject in subjects:
                response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
                assert response.status_code == 201

            async def made(system: str) -> Counter[str]:
                return Counter(str(o["title"]) for o in await sim_objects(control[system]))

            async def every_object_made() -> bool:
                incidents, follow_ups = await made("devhelm"), await made("incidentio")
                return all(incidents[s] >= 1 and follow_ups[s] >= 1 for s in subjects)

            await eventually(every_object_made, timeout_s=60, what="every create done")
            took = time.monotonic() - started
            assert await made("devhelm") == Counter(subjects)
            assert await made("incidentio") == Counter(subjects)
        finally:
            await gateway.stop()
    writes = 2 * TICKETS
    # one write at a time, two claimed (one in its slot, one waiting for it): with only
    # the idle round to claim again, at most two writes would start per round
    assert took < writes / 2 * IDLE_S / 2, (
        f"{writes} writes, one at a time at {LATENCY_MS} ms a call, took {took:.1f} s"
    )
