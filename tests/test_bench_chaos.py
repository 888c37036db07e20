"""The chaos check (``bench/chaos.py``) kept working: one short seeded run against a real
``syncgate serve`` (people editing in three tools under latency, faults and a kill -9),
and its checker's explanations, which must not excuse a plain lost edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.chaos import (
    NEEDS_POSTGRES,
    Edit,
    explained_by_echo,
    explained_by_object_time,
    explained_by_revert,
    main,
    run,
)
from tests.conftest import open_store, postgres_url

T = 1_800_000_000.0


def at(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T + seconds, UTC).isoformat().replace("+00:00", "Z")


def detail(*history: dict[str, Any]) -> dict[str, Any]:
    created = {"kind": "created", "at": at(0), "field": None, "system": "inboxops"}
    created["new_value"] = {"status": "open", "title": "t"}
    return {"history": [created, *history]}


def change(seconds: float, system: str, value: str) -> dict[str, Any]:
    return {
        "kind": "change",
        "at": at(seconds),
        "field": "status",
        "system": system,
        "new_value": value,
    }


def edit(seconds: float, system: str, before: str, value: str) -> Edit:
    return Edit(0, 0, system, "status", before, value, T + seconds)


def test_the_checker_excuses_no_plain_lost_edit() -> None:
    # the item was resolved from incident.io at 10 s; a DevHelm edit to MONITORING at
    # 20 s that left no trace is neither an echo (RESOLVED is what would be written) nor
    # a revert
    history = detail(change(10, "incidentio", "resolved"))
    monitoring = edit(20, "devhelm", "RESOLVED", "MONITORING")
    assert not explained_by_echo(history, monitoring)
    assert not explained_by_revert(history, [monitoring], monitoring)
    # setting RESOLVED while resolved is what the gateway writes there: an echo
    assert explained_by_echo(history, edit(20, "devhelm", "INVESTIGATING", "RESOLVED"))
    # A, B, A with B seen by the gateway is no revert; with B never seen, it is
    b = edit(30, "devhelm", "INVESTIGATING", "IDENTIFIED")
    a = edit(40, "devhelm", "IDENTIFIED", "INVESTIGATING")
    seen = detail(change(31, "devhelm", "acknowledged"))
    assert not explained_by_revert(seen, [b, a], a)
    assert explained_by_revert(detail(), [b, a], a)
    # an older DevHelm status beats a later incident.io one only when the gateway first
    # read it with a later edit of another DevHelm field (the object's time)
    older = edit(50, "devhelm", "INVESTIGATING", "RESOLVED")
    newer = edit(60, "incidentio", "outstanding", "not_doing")
    impact = Edit(0, 0, "devhelm", "priority", "MINOR", "MAJOR", T + 70)
    read_late = detail(change(71, "devhelm", "resolved"))
    assert not explained_by_object_time(read_late, [older, newer], newer, "resolved")
    assert explained_by_object_time(read_late, [older, newer, impact], newer, "resolved")
    read_early = detail(change(55, "devhelm", "resolved"))
    assert not explained_by_object_time(read_early, [older, newer, impact], newer, "resolved")


@pytest.mark.slow
async def test_a_short_chaos_run_finds_no_lost_edit(tmp_path: Path) -> None:
    problems = await run(
        seed=7, rounds=2, items=3, edits=10, seconds=3.0, kills=True, workdir=tmp_path
    )
    assert problems == []


def test_several_processes_are_refused_without_postgres(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--processes", "2"])
    assert refused.value.code == 2
    assert NEEDS_POSTGRES in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_short_two_process_chaos_run_on_postgres_finds_no_lost_edit(
    tmp_path: Path,
) -> None:
    """Two ``syncgate serve`` processes on one PostgreSQL database, the webhooks spread
    over both, one of them killed (-9) and started again."""
    await (await open_store("postgres", tmp_path)).close()  # migrated and empty
    problems = await run(
        seed=100,
        rounds=2,
        items=3,
        edits=10,
        seconds=3.0,
        kills=True,
        workdir=tmp_path,
        database_url=postgres_url(),
        processes=2,
    )
    assert problems == []
