"""``/admin/backfill``: plan (and, asked to, carry out) a backfill of existing objects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.exceptions import ValidationException
from litestar.params import JSONBody

from app.backfill import PlanLine, parse_since
from app.http.admin.common import audit
from app.http.admin.models import doc
from app.http.context import gateway_of
from app.http.problems import errors


class BackfillIn(msgspec.Struct, forbid_unknown_fields=True):
    """``systems``: the systems to walk (all enabled ones when empty); ``since``: ISO 8601
    or a duration (``30d``, ``12h``), the whole history when absent; ``dry_run``: only
    plan (the default)."""

    systems: Annotated[
        list[str], doc("The systems to walk; empty: every enabled system", ["hookstream"])
    ] = msgspec.field(default_factory=list)
    since: Annotated[
        str | None,
        doc("ISO 8601 or a duration back from now (90s, 45m, 12h, 30d); null: all", "30d"),
    ] = None
    dry_run: Annotated[
        bool, doc("Only plan (no database row, no vendor write); false carries it out", True)
    ] = True


class BackfillLine(msgspec.Struct):
    """One object's line of the plan; ``outcome`` says what a real run did with it."""

    system: Annotated[str, doc("The object's system", "hookstream")]
    scope: Annotated[str, doc("Its scope (DevHelm page, incident.io incident); may be empty", "")]
    external_id: Annotated[str, doc("The vendor's id", "iss_8f2c")]
    action: Annotated[str, doc("link, create or skip", "create")]
    reason: Annotated[str, doc("Why", "rule 'hookstream-issue-fans-out'")]
    work_item_id: Annotated[str | None, doc("The work item it links to, if any", None)]
    title: Annotated[str, doc("The object's title", "orders-webhook: http_5xx")]
    text: Annotated[
        str, doc("The line as the CLI prints it", "create hookstream iss_8f2c: rule 'fan-out'")
    ]
    outcome: Annotated[
        str | None, doc("What a real run did with it; null in a dry run", "created")
    ] = None


class BackfillOut(msgspec.Struct):
    """The plan, and with ``dry_run: false`` what was done."""

    dry_run: Annotated[bool, doc("Whether this was only a plan", True)]
    systems: Annotated[list[str], doc("The systems walked", ["hookstream"])]
    since: Annotated[
        datetime | None, doc("The moment walked from; null: all", "2026-11-02T10:02:11Z")
    ]
    counts: Annotated[dict[str, int], doc("Lines per action", {"link": 0, "create": 1, "skip": 2})]
    summary: Annotated[str, doc("The summary line", "0 link, 1 create, 2 skip")]
    lines: Annotated[list[BackfillLine], doc("One line per object walked")]


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
    # the parameter documents the body; it is read again strictly here, so that a
    # number is not taken for a boolean (litestar converts bodies leniently)
    try:
        data = msgspec.json.decode(await request.body(), type=BackfillIn)
    except msgspec.ValidationError as exc:
        raise ValidationException(f"Validation failed for POST /admin/backfill: {exc}") from None
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
