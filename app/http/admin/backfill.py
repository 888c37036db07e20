"""``/admin/backfill``: plan (and, asked to, carry out) a backfill of existing objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody

from app.backfill import PlanLine, parse_since
from app.http.admin.common import audit
from app.http.context import gateway_of
from app.http.problems import errors


class BackfillIn(msgspec.Struct, forbid_unknown_fields=True):
    """``systems``: the systems to walk (all enabled ones when empty); ``since``: ISO 8601
    or a duration (``30d``, ``12h``), the whole history when absent; ``dry_run``: only
    plan (the default)."""

    systems: list[str] = msgspec.field(default_factory=list)
    since: str | None = None
    dry_run: bool = True


class BackfillLine(msgspec.Struct):
    """One object's line of the plan; ``outcome`` says what a real run did with it."""

    system: str
    scope: str
    external_id: str
    action: str
    reason: str
    work_item_id: str | None
    title: str
    text: str
    outcome: str | None = None


class BackfillOut(msgspec.Struct):
    dry_run: bool
    systems: list[str]
    since: datetime | None
    counts: dict[str, int]
    summary: str
    lines: list[BackfillLine]


def _line(line: PlanLine, outcome: str | None) -> BackfillLine:
    return BackfillLine(
        line.system,
        line.scope,
        line.external_id,
        line.action,
        line.reason,
        line.work_item_id,
        line.title,
        line.text(),
        outcome,
    )


@post(
    "/backfill",
    summary="Plan a backfill of existing objects (dry run by default), or carry it out",
    tags=["backfill"],
    description="Walks the objects changed since `since` in `systems` and plans, per object,"
    " link (by marker or link rule), create (by the creation rules) or skip, with the reason."
    " A dry run changes nothing. With `dry_run: false` the plan is carried out (a second run"
    " plans nothing done again) and each line says what was done.",
    responses=errors(400, 422, 502),
    status_code=200,
)
async def backfill(request: Request[Any, Any, Any], data: JSONBody[BackfillIn]) -> BackfillOut:
    gateway = gateway_of(request)
    since = None if data.since is None else parse_since(data.since, gateway.clock())
    service = gateway.backfill
    if data.dry_run:
        plan = await service.plan(data.systems, since)
        lines = [_line(line, None) for line in plan.lines]
    else:
        outcomes: dict[tuple[str, str, str], str] = {}

        def done(line: PlanLine, outcome: str) -> None:
            outcomes[(line.system, line.scope, line.external_id)] = outcome

        plan = await service.run(data.systems, since, done)
        lines = [
            _line(line, outcomes.get((line.system, line.scope, line.external_id)))
            for line in plan.lines
        ]
        audit("backfill", systems=plan.systems, plan=plan.summary())
    return BackfillOut(
        dry_run=data.dry_run,
        systems=plan.systems,
        since=plan.since,
        counts=plan.counts(),
        summary=plan.summary(),
        lines=lines,
    )
