"""The soak's verdict (``bench.soak.problems``): what makes ``python -m bench.soak`` exit 1.
The soak itself runs for minutes and is not part of CI (docs/reliability.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.install import WRITE_SYSTEMS
from bench.soak import FAULTS, FetchTally, armed_faults, fault_pump, problems
from tests.blackbox import eventually


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


def test_a_gateway_over_the_memory_target_fails_the_run() -> None:
    flat = [{"t_s": 120, "rss_mb": 125.6}, {"t_s": 240, "rss_mb": 131.9}]
    assert problems(clean() | {"windows": flat}) == 0
    grown = [*flat, {"t_s": 360, "rss_mb": 169.1}, {"t_s": 480, "rss_mb": 185.0}]
    assert problems(clean() | {"windows": grown}) == 2


class Logs:
    """The part of the simulators the fault pump talks to: their request logs and the
    faults queued on each."""

    def __init__(self) -> None:
        self.log: dict[str, list[dict[str, Any]]] = {s: [] for s in WRITE_SYSTEMS}
        self.faults: dict[str, list[dict[str, Any]]] = {s: [] for s in WRITE_SYSTEMS}

    async def sim(self, system: str, method: str, path: str, **kw: Any) -> Any:
        if (method, path) == ("GET", "/_sim/requests"):
            return {"requests": list(self.log[system])}
        if (method, path) == ("DELETE", "/_sim/requests"):
            self.log[system].clear()
        elif (method, path) == ("DELETE", "/_sim/faults"):
            self.faults[system].clear()
        elif (method, path) == ("POST", "/_sim/faults"):
            self.faults[system].append(kw["json"])
        return None


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_the_armed_faults_fail_a_call_with_the_share_asked_for(share: float) -> None:
    """Each kind once, each met by chance; tried in turn, a call meets at most one, so
    the chance of meeting one is 1 - (1 - p) ** kinds."""
    faults = armed_faults(share)
    assert [{k: v for k, v in f.items() if k not in ("chance", "count")} for f in faults] == [
        *FAULTS
    ]
    (p,) = {f["chance"] for f in faults}
    assert 1 - (1 - p) ** len(faults) == pytest.approx(share)
    assert all(f["count"] >= 1_000_000 for f in faults)


async def test_the_pump_arms_every_simulator_counts_the_calls_and_disarms_at_the_end() -> None:
    logs = Logs()
    stop = asyncio.Event()
    tally = FetchTally()
    tally.opened.add("iss_new")
    pump = asyncio.create_task(fault_pump(logs, 0.1, stop, tally))  # type: ignore[arg-type]

    async def armed() -> bool:
        return all(len(f) == len(FAULTS) for f in logs.faults.values())

    await eventually(armed, timeout_s=5, what="the faults queued")
    logs.log["hookstream"] += [
        {"method": "GET", "path": "/v1/issues/iss_new", "status": 0},  # hanging
        {"method": "PATCH", "path": "/v1/issues/iss_old", "status": 200},
    ]
    logs.log["devhelm"] += [{"method": "PUT", "path": "/x", "status": 429}]
    stop.set()
    out = await pump
    assert not any(logs.faults.values()), "the faults are dropped when the pump stops"
    assert (out["vendor_calls"], out["vendor_calls_failed"], out["faults_met"]) == (3, 1, 2)
    assert out["hookstream_calls"] == {"notification_fetches": [1, 1], "other_calls": [1, 0]}


def test_the_tally_tells_the_notifications_fetches_from_other_calls() -> None:
    tally = FetchTally()
    tally.opened.add("iss_new")

    def call(method: str, issue: str, status: int) -> dict[str, Any]:
        return {"method": method, "path": f"/v1/issues/{issue}", "status": status}

    tally.add(
        [
            call("GET", "iss_new", 0),  # hanging when the log was read: failed
            call("PATCH", "iss_new", 200),  # not a read
            call("GET", "iss_old", 503),  # a read before a write
            call("GET", "iss_new", 429),
            call("GET", "iss_new", 200),
        ]
    )
    assert tally.summary() == {"notification_fetches": [3, 2], "other_calls": [2, 1]}
