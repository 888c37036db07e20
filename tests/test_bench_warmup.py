"""The benchmark's warm-up (``bench.run.warm_up``) waits for its own writes: the systems
compared acknowledge a change before its three vendor writes are made, and a write that
lands after the warm-up returned would be counted in the first measured run."""

from __future__ import annotations

from typing import Any

import pytest

from bench import run


class AckFirst:
    """A comparison system (no gateway database) that acknowledges each change at once
    and makes its three writes later: they land when its simulators' logs are read the
    second time after the change was accepted. The logs already hold the writes of the
    system measured before it."""

    kind = "floor"
    server = None
    db = None

    def __init__(self, earlier_writes: int) -> None:
        self.items = list(range(50))
        self.log = earlier_writes
        self.pending: list[int] = []  # per change accepted: reads of the log it waits for

    async def clear_requests(self) -> None:
        self.log = 0

    async def write_count(self) -> int:
        count = self.log
        self.pending = [reads - 1 for reads in self.pending]
        self.log += 3 * sum(reads == 0 for reads in self.pending)
        self.pending = [reads for reads in self.pending if reads > 0]
        return count

    def accept(self, n: int) -> None:
        self.pending += [2] * n


async def test_the_warm_up_waits_for_its_own_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    inst = AckFirst(earlier_writes=3 * 128)

    async def closed_loop(inst: AckFirst, cursor: Any, conc: int, n: int, **kw: Any) -> Any:
        inst.accept(n)
        return {"accepted": n}

    monkeypatch.setattr(run, "closed_loop", closed_loop)
    monkeypatch.setattr(run, "log", lambda *a: None)
    await run.warm_up(inst, run.Cursor(inst.items), {"warmup_n": 20})  # type: ignore[arg-type]
    late = len(inst.pending)
    assert late == 0, f"{late} warm-up changes still had writes to make"
