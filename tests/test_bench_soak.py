"""The soak's verdict (``bench.soak.problems``): what makes ``python -m bench.soak`` exit 1.
The soak itself runs for minutes and is not part of CI (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import FetchTally, _pump_once, problems


def clean() -> dict[str, Any]:
    return {
        "acknowledged": 100,
        "inbox_events": 100,
        "objects_not_holding_last_change": 0,
        "duplicate_vendor_objects": 0,
        "missing_creates": 0,
        "events_not_done": {},
    }


def test_a_clean_run_has_no_problems() -> None:
    assert problems(clean()) == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("inbox_events", 99),  # an acknowledged change not in the inbox
        ("objects_not_holding_last_change", 1),
        ("duplicate_vendor_objects", 1),
        ("missing_creates", 3),
        ("events_not_done", {"hookstream failed": 1}),
        ("events_not_done", {"inboxops pending": 2}),
    ],
)
def test_each_kind_of_loss_fails_the_run(key: str, value: Any) -> None:
    result = clean() | {key: value}
    assert problems(result) > 0


def test_a_write_ahead_log_over_its_bound_fails_the_run() -> None:
    window = {"t_s": 60, "wal_mb": 70.0}
    assert problems(clean() | {"windows": [window, {"t_s": 120, "wal_mb": None}]}) == 0
    assert problems(clean() | {"windows": [window, {"t_s": 120, "wal_mb": 12_236.1}]}) == 1


class FaultQueue:
    """The part of a simulator the fault pump talks to: its request log and its queue
    of faults, each met by the next call."""

    def __init__(self) -> None:
        self.log: list[dict[str, int]] = []
        self.faults: list[dict[str, Any]] = []

    def calls(self, n: int) -> int:
        """``n`` calls to the vendor; returns how many met a fault."""
        met = min(n, len(self.faults))
        del self.faults[:met]
        self.log += [{"status": 500}] * met + [{"status": 200}] * (n - met)
        return met

    async def sim(self, system: str, method: str, path: str, **kw: Any) -> Any:
        if (method, path) == ("GET", "/_sim/requests"):
            return {"requests": list(self.log)}
        if (method, path) == ("DELETE", "/_sim/requests"):
            self.log.clear()
        elif (method, path) == ("DELETE", "/_sim/faults"):
            self.faults.clear()
        elif (method, path) == ("POST", "/_sim/faults"):
            self.faults.append(kw["json"])
        return None


async def test_a_gateway_held_back_meets_only_its_share_of_faults() -> None:
    """A busy second queues faults for a tenth of its calls; when the gateway then makes
    few calls (held back by a 429 or hanging calls), those few must not all meet the
    faults queued for the many: that pile once failed nearly every DevHelm call for
    minutes and dead-lettered a write."""
    sim = FaultQueue()
    out = {"faults_queued": 0, "vendor_calls": 0, "vendor_calls_failed": 0}
    carry = {"devhelm": 0.0}
    met = []
    for calls in (200, 5, 5, 5, 5, 5, 5, 5, 5):
        met.append(sim.calls(calls))
        await _pump_once(sim, "devhelm", 0.1, out, carry, 0)  # type: ignore[arg-type]
    assert met[0] == 0
    # the first slow second meets what the busy one queued; the slow seconds after it
    # meet at most their own share (half a fault a second here)
    assert sum(met[2:]) <= 4
    assert out["vendor_calls"] == 240
    assert out["faults_queued"] == 20 + 4


def test_the_tally_tells_the_notifications_fetches_from_other_calls_and_counts_places() -> None:
    tally = FetchTally()
    tally.opened.add("iss_new")
    tally.queued_at = 10.0

    def call(method: str, issue: str, status: int, at: float) -> dict[str, Any]:
        return {"method": method, "path": f"/v1/issues/{issue}", "status": status, "at": at}

    tally.add(
        [
            call("GET", "iss_new", 0, 10.2),  # hanging when the log was read: failed
            call("PATCH", "iss_new", 200, 9.5),  # before the faults were queued
            call("GET", "iss_old", 200, 10.1),  # a read before a write
            call("GET", "iss_new", 429, 10.3),
        ]
    )
    summary = tally.summary()
    assert summary["notification_fetches"] == [2, 2]
    assert summary["other_calls"] == [2, 0]
    assert summary["by_position_after_faults_queued"] == [[1, 0], [1, 1], [1, 1], [0, 0]]
