"""The soak's verdict (``bench.soak.problems``): what makes ``python -m bench.soak`` exit 1.
The soak itself runs for minutes and is not part of CI (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import problems


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
