"""The backfill service on its own: WHEN parsing, the progress output, and a backfill that
stops half-way (a crash) and is run again: it resumes, and nothing is done twice."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from app.backfill import PlanLine, item_of_marker, parse_since
from app.cli.backfill import Bar
from app.errors import Invalid
from app.model import ObjectRef
from app.store import Store
from tests.rig import running_rig

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - timedelta(days=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("45m", NOW - timedelta(minutes=45)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T09:30:00+01:00", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_or_an_iso_time(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["last tuesday", "30 days", "-3d", "", "2026-13-01"])
def test_anything_else_is_refused_with_both_forms_named(text: str) -> None:
    with pytest.raises(Invalid, match=r"neither a duration .* nor an ISO 8601 time"):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("99999999d", "reaches back before the year 1"),
        ("999999999999w", "reaches back before the year 1"),
        ("9" * 5000 + "d", "reaches back before the year 1"),
        ("0001-01-01T00:00:00+05:00", "out of range"),
        ("9999-12-31T23:00:00-05:00", "out of range"),
        ("2999-01-01", "is in the future"),
        ("2026-12-02T10:00:01Z", "is in the future"),
    ],
)
def test_a_moment_out_of_range_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(Invalid, match=rf"^since: .*{reason}"):
        parse_since(text, NOW)


def test_only_syncgate_keys_name_a_work_item() -> None:
    item = "0123456789abcdef" * 2
    assert item_of_marker(f"syncgate-{item}-42") == item
    assert item_of_marker("syncgate-short-1") is None
    assert item_of_marker("wi-1:link-2") is None
    assert item_of_marker(None) is None


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    line = PlanLine("hookstream", "", "iss_1", "create", "rule 'r'", title="Disk full")
    plain = io.StringIO()
    bar = Bar(2, plain)
    bar.step(line, "created")
    bar.close()
    assert plain.getvalue() == "create hookstream iss_1 \"Disk full\": rule 'r' -> created\n"
    tty = FakeTerminal()
    bar = Bar(2, tty)
    bar.step(line, "created")
    bar.step(line, "created")
    bar.close()
    frames = tty.getvalue().split("\r")[1:]
    assert [f.split("] ")[1].split()[0] for f in frames] == ["1/2", "2/2"]
    assert frames[-1].startswith("[" + "#" * 10) and tty.getvalue().endswith("\n")


class Crash(Exception):
    pass


async def test_a_backfill_stopped_half_way_resumes_and_does_nothing_twice(store: Store) -> None:
    async with running_rig(store) as rig:
        issues = [await rig.open_issue(n) for n in range(3)]
        backfill = rig.gateway.backfill
        plan = await backfill.plan(["hookstream"], None)
        assert plan.summary() == "0 link, 3 create, 0 skip"

        done: list[str] = []

        def crash_after_one(line: PlanLine, outcome: str) -> None:
            done.append(f"{line.external_id} {outcome}")
            raise Crash

        with pytest.raises(Crash):
            await backfill.run(["hookstream"], None, crash_after_one)
        assert len(done) == 1 and done[0].endswith(" created")

        again = await backfill.plan(["hookstream"], None)
        assert again.summary() == "0 link, 2 create, 1 skip"
        [skipped] = [line for line in again.lines if line.action == "skip"]
        assert done[0].startswith(skipped.external_id)
        assert skipped.reason.startswith("linked to work item ")

        outcomes: list[str] = []
        await backfill.run(["hookstream"], None, lambda line, outcome: outcomes.append(outcome))
        assert sorted(outcomes) == ["created", "created", "skipped"]
        await rig.settle()
        async with rig.gateway.store.tx() as tx:
            _items, total = await tx.search_items()
        assert total == 3
        async with rig.gateway.store.tx() as tx:
            linked = await tx.links_for(ObjectRef("hookstream", "", i) for i in issues)
        assert len(linked) == 3 and len({link.work_item_id for link in linked.values()}) == 3
        assert len(await rig.objects("devhelm")) == 3  # one incident per issue, no more
        final = await backfill.plan(["hookstream"], None)
        assert final.summary() == "0 link, 0 create, 3 skip"
