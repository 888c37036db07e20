"""The profile summary of ``python -m bench.run --profile`` (bench/profile.py): the
project's functions by total share leave out the entry frames every event-loop stack
goes through, however much a helper thread takes besides, and idle helper threads count
for nothing."""

from __future__ import annotations

from collections import Counter

from bench.profile import project_top, summarise

MAIN = "main (app/cli/main.py:366)"
SERVE = "run (app/serving.py:35)"
LOOP = "Runner.run (asyncio/runners.py:86)"
WRITE = "Dispatcher._update (app/dispatcher.py:405)"
INBOX = "InboxWorker.run_once (app/inbox.py:142)"
CHECKPOINT = "WalCheckpointer._run (app/store/database.py:243)"


def stacks(checkpoint: int) -> Counter[tuple[str, ...]]:
    return Counter(
        {
            (MAIN, SERVE, LOOP, WRITE, "ClientSession._request (aiohttp/client.py:558)"): 60,
            (MAIN, SERVE, LOOP, INBOX): 30,
            (MAIN, SERVE, LOOP): 10,
            ("Thread.run (threading.py:982)", CHECKPOINT): checkpoint,
            ("Thread.run (threading.py:982)", "Event.wait (threading.py:629)"): 500,
        }
    )


def test_entry_frames_are_left_out_even_beside_a_busy_helper_thread() -> None:
    for checkpoint in (0, 4, 20):
        top = {row["function"]: row["total_pct"] for row in project_top(stacks(checkpoint))}
        assert MAIN not in top and SERVE not in top, (checkpoint, top)
        active = 100 + checkpoint  # the idle wait is not counted
        assert abs(top[WRITE] - 100 * 60 / active) < 1e-9
        assert abs(top[INBOX] - 100 * 30 / active) < 1e-9
        if checkpoint:
            assert abs(top[CHECKPOINT] - 100 * checkpoint / active) < 1e-9


def test_self_shares_leave_idle_threads_out() -> None:
    rows = {row["function"]: row for row in summarise(stacks(20))}
    assert "Event.wait (threading.py:629)" not in rows
    assert rows[LOOP]["self_samples"] == 10
    assert abs(sum(row["self_pct"] for row in rows.values()) - 100.0) < 1e-9
